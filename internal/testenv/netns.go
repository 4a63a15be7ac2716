package testenv

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// netnsDir is where `ip netns add` keeps the namespace handles nsenter joins.
const netnsDir = "/var/run/netns"

// NetNS is a network namespace a test made for itself, joined to the host namespace by a
// veth pair with a /30 of the benchmarking range 198.18.0.0/15 (RFC 2544): HostIP on the
// host end, IP on the namespace end. A server started in it with Command and listening on
// IP is reached from the host namespace (the test process, a dockerd) through the veth
// only; the namespace has no other interface than its loopback and no default route.
type NetNS struct {
	// Name is the `ip netns` name, "rdtls-<random>".
	Name string
	// HostIP is the address of the veth end in the host namespace.
	HostIP string
	// IP is the address of the veth end inside the namespace.
	IP string

	ip, nsenter string
	hostLink    string

	mu       sync.Mutex
	nextPort int
}

// NewNetNS creates a network namespace and its veth pair, with both ends and the
// namespace's loopback up, and registers a cleanup that deletes the veth pair and the
// namespace (after stopping any process left in it) even when the test fails. It fails
// the test when not running as root or when `ip` or `nsenter` is not installed.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("a network namespace needs root (euid %d): run the test as root", os.Geteuid())
	}
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("`ip` (iproute2) is needed to create a network namespace: %v", err)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Fatalf("`nsenter` (util-linux) is needed to run a process in a network namespace: %v", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	n := &NetNS{Name: "rdtls-" + id, ip: ipPath, nsenter: nsenter, hostLink: "rdh" + id, nextPort: 20000}
	nsLink := "rdn" + id // interface names stay under 16 bytes
	hostIP, nsIP := freeBenchmarkNet(t)
	n.HostIP, n.IP = hostIP.String(), nsIP.String()

	// Registered before anything exists, so a setup failing half way is undone too.
	t.Cleanup(func() { n.remove(t) })
	steps := [][]string{
		{"netns", "add", n.Name},
		{"link", "add", n.hostLink, "type", "veth", "peer", "name", nsLink},
		{"link", "set", nsLink, "netns", n.Name},
		{"addr", "add", n.HostIP + "/30", "dev", n.hostLink},
		{"link", "set", n.hostLink, "up"},
		{"-n", n.Name, "addr", "add", n.IP + "/30", "dev", nsLink},
		{"-n", n.Name, "link", "set", nsLink, "up"},
		{"-n", n.Name, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := n.run(s...); err != nil {
			t.Fatalf("network namespace %s: %v", n.Name, err)
		}
	}
	return n
}

// freeBenchmarkNet picks a random /30 of 198.18.0.0/15 that no local interface address
// falls in, and returns its two usable addresses.
func freeBenchmarkNet(t testing.TB) (host, ns net.IP) {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 0; attempt < 100; attempt++ {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		// 198.18.0.0/15 holds 2^15 /30 networks.
		base := uint32(198)<<24 | uint32(18)<<16 | (binary.BigEndian.Uint32(b)%(1<<15))<<2
		subnet := &net.IPNet{IP: ipv4(base), Mask: net.CIDRMask(30, 32)}
		used := false
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && subnet.Contains(n.IP) {
				used = true
				break
			}
		}
		if !used {
			return ipv4(base + 1), ipv4(base + 2)
		}
	}
	t.Fatal("no free /30 in 198.18.0.0/15 after 100 tries")
	return nil, nil
}

func ipv4(v uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, v)
	return ip
}

// Command returns the path and arguments that run path with args inside the namespace:
// nsenter joins it and then execs path, so the process keeps nsenter's PID and process
// group (Start's process-group signals reach it).
func (n *NetNS) Command(path string, args ...string) (string, []string) {
	return n.nsenter, append([]string{"--net=" + filepath.Join(netnsDir, n.Name), "--", path}, args...)
}

// Port returns a TCP port that no caller of Port got before for this namespace. Nothing
// but the processes a test starts in it listens there, so the port is free.
func (n *NetNS) Port() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.nextPort
	n.nextPort++
	return p
}

// Addr returns "<IP>:<port>" with a fresh port from Port.
func (n *NetNS) Addr() string { return net.JoinHostPort(n.IP, strconv.Itoa(n.Port())) }

func (n *NetNS) run(args ...string) error {
	out, err := exec.Command(n.ip, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// remove kills what still runs in the namespace (processes a test started there whose
// own cleanup failed), then deletes the veth pair and the namespace. Missing pieces are
// fine: the setup may have stopped half way.
func (n *NetNS) remove(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(netnsDir, n.Name)); err == nil {
		if out, err := exec.Command(n.ip, "netns", "pids", n.Name).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					t.Logf("network namespace %s: killing leftover process %d", n.Name, pid)
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	if _, err := net.InterfaceByName(n.hostLink); err == nil {
		// Deleting one end deletes the pair.
		if err := n.run("link", "del", n.hostLink); err != nil {
			t.Errorf("network namespace %s: %v", n.Name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(netnsDir, n.Name)); err == nil {
		if err := n.run("netns", "del", n.Name); err != nil {
			t.Errorf("network namespace %s: %v", n.Name, err)
		}
	}
}
