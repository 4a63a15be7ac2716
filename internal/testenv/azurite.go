package testenv

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// Azurite's published development account (the same in every installation).
const (
	// AzuriteAccount is the account name Azurite serves.
	AzuriteAccount = "devstoreaccount1"
	// AzuriteKey is the shared key of AzuriteAccount.
	AzuriteKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azurite is a running Azurite blob service.
type Azurite struct {
	*Process
	// Account and Key are the shared-key credentials of the development account.
	Account, Key string
	// ServiceURL is "http://127.0.0.1:<port>/devstoreaccount1" (path-style account).
	ServiceURL string
}

// StartAzurite starts azurite-blob on a free loopback port with its data under a temporary
// directory, and stops it when the test ends. A missing azurite-blob fails the test.
func StartAzurite(t testing.TB) *Azurite {
	t.Helper()
	bin := Tool(t, "azurite-blob")
	port := FreePort(t)
	addr := Addr(port)
	service := "http://" + addr + "/" + AzuriteAccount
	p := Start(t, Spec{
		Name: "azurite",
		Path: bin,
		Args: []string{
			"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(port),
			"--location", t.TempDir(), "--loose", "--skipApiVersionCheck", "--silent",
			"--disableTelemetry",
		},
		Addr: addr,
		// Any HTTP answer (an authentication error for an anonymous request) means it serves.
		Ready: HTTPReady(service + "?comp=list"),
	})
	return &Azurite{Process: p, Account: AzuriteAccount, Key: AzuriteKey, ServiceURL: service}
}

// NewContainer creates a container with a fresh random name and returns its name.
func (a *Azurite) NewContainer(t testing.TB) string {
	t.Helper()
	return createNamed(t, "container", a.createContainer)
}

// createContainer sends Create Container signed with the account's shared key. It is
// written against the REST API directly so the test environment does not depend on the SDK
// under test.
func (a *Azurite) createContainer(ctx context.Context, name string) error {
	u := a.ServiceURL + "/" + name + "?restype=container"
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, http.NoBody)
	if err != nil {
		return err
	}
	date := time.Now().UTC().Format(http.TimeFormat)
	const version = "2021-12-02"
	req.Header.Set("x-ms-date", date)
	req.Header.Set("x-ms-version", version)
	req.ContentLength = 0
	// Shared Key string to sign: verb, 11 standard headers (Content-Length empty when 0),
	// canonicalized x-ms- headers, canonicalized resource.
	toSign := "PUT\n\n\n\n\n\n\n\n\n\n\n\n" +
		"x-ms-date:" + date + "\nx-ms-version:" + version + "\n" +
		"/" + a.Account + "/" + a.Account + "/" + name + "\nrestype:container"
	key, err := base64.StdEncoding.DecodeString(a.Key)
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(toSign))
	req.Header.Set("Authorization", "SharedKey "+a.Account+":"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("create container: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}
