package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary, run again as a child, serve its network namespace's
// identity on the address the variable holds (see TestNetNSHelperProcess).
const helperEnv = "REGISTRYD_TESTENV_NETNS_LISTEN"

// TestNetNSHelperProcess is not a test: run by TestNetNS inside the namespace, it answers
// every connection with the inode of its network namespace, until killed.
func TestNetNSHelperProcess(t *testing.T) {
	addr := os.Getenv(helperEnv)
	if addr == "" {
		t.Skip("helper process of TestNetNS")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(3)
		}
		_, _ = io.WriteString(c, self)
		c.Close()
	}
}

// TestNetNS starts a process in a namespace from NewNetNS and checks that it runs there
// under its own PID (nsenter execs, so process-group signals reach it), that the test
// reaches it through the veth, and that the namespace and the veth pair are gone after the test that made them.
func TestNetNS(t *testing.T) {
	if testing.Short() {
		t.Skip("creates a network namespace")
	}
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var name, hostIP, hostLink string
	t.Run("use", func(t *testing.T) {
		ns := NewNetNS(t)
		name, hostIP, hostLink = ns.Name, ns.HostIP, ns.hostLink
		if _, err := net.InterfaceByName(hostLink); err != nil {
			t.Errorf("host veth end %s: %v", hostLink, err)
		}
		if !strings.HasPrefix(ns.IP, "198.18.") && !strings.HasPrefix(ns.IP, "198.19.") {
			t.Errorf("namespace address %s outside 198.18.0.0/15", ns.IP)
		}
		addr := ns.Addr()
		if again := ns.Addr(); again == addr {
			t.Errorf("Addr gave %s twice", addr)
		}
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		path, args := ns.Command(exe, "-test.run=^TestNetNSHelperProcess$")
		var got string
		p := Start(t, Spec{
			Name: "netns helper",
			Path: path,
			Args: args,
			Env:  []string{helperEnv + "=" + addr},
			Addr: addr,
			Ready: func(ctx context.Context) error {
				var d net.Dialer
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					return err
				}
				defer c.Close()
				b, err := io.ReadAll(c)
				got = string(b)
				return err
			},
			ReadyTimeout: 20 * time.Second,
		})
		if got == "" || got == self {
			t.Errorf("helper's network namespace %q, want one other than the test's %q", got, self)
		}
		if runExe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.Cmd.Process.Pid)); err != nil || runExe != exe {
			t.Errorf("process %d runs %q (%v), want %s: nsenter did not exec in place", p.Cmd.Process.Pid, runExe, err, exe)
		}
		p.Stop()
		select {
		case <-p.Exited():
		default:
			t.Error("helper still running after Stop")
		}
	})
	if name == "" {
		t.Fatal("no namespace was made")
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(out)) {
		if f == name {
			t.Errorf("network namespace %s left after the test", name)
		}
	}
	if _, err := net.InterfaceByName(hostLink); err == nil {
		t.Errorf("host veth end %s left after the test", hostLink)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.String() == hostIP {
			t.Errorf("host veth address %s left after the test", hostIP)
		}
	}
}
