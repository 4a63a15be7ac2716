package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestAuthValidation(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		env        []string
		wantErr    string // "" for valid
	}{
		{"none", "", nil, ""},
		{"htpasswd", "auth: {htpasswd: {path: /etc/htpasswd}}", nil, ""},
		{"htpasswd from the environment", "", []string{"REGISTRY_AUTH_HTPASSWD_PATH=/etc/htpasswd", "REGISTRY_AUTH_HTPASSWD_REALM=r"}, ""},
		{"htpasswd without path", "auth: {htpasswd: {realm: r}}", nil, "auth.htpasswd.path: required"},
		{"quote in realm", `auth: {htpasswd: {path: p, realm: 'a"b'}}`, nil, "auth.htpasswd.realm"},
		{"token", "auth: {token: {realm: https://a/t, service: s, issuer: i, jwks: /k.json}}", nil, ""},
		{"token without issuer", "auth: {token: {realm: https://a/t, service: s, jwks: /k.json}}", nil, "auth.token.issuer: required"},
		{"token without keys", "auth: {token: {realm: https://a/t, service: s, issuer: i}}", nil, "one of auth.token.rootcertbundle and auth.token.jwks"},
		{"both", "auth: {htpasswd: {path: p}, token: {realm: r, service: s, issuer: i, jwks: k}}", nil, "set htpasswd or token, not both"},
		{"rules without authentication", "auth: {access: [{repository: '**', anonymous: true, actions: [pull]}]}", nil, "auth.access: needs auth.htpasswd or auth.token"},
		{"rules", "auth: {htpasswd: {path: p}, groups: {dev: [a, b]}, access: [{repository: 'team/**', groups: [dev], users: [c], actions: [pull, push, delete]}, {repository: 'pub/*', anonymous: true, actions: [pull]}]}", nil, ""},
		{"rule without repository", "auth: {htpasswd: {path: p}, access: [{users: [a], actions: [pull]}]}", nil, "auth.access[0].repository: required"},
		{"rule without subject", "auth: {htpasswd: {path: p}, access: [{repository: a, actions: [pull]}]}", nil, "auth.access[0]: names no users"},
		{"rule with an empty user name", "auth: {htpasswd: {path: p}, access: [{repository: a, users: [\"\"], actions: [pull]}]}", nil, "auth.access[0].users: empty user name"},
		{"undefined group", "auth: {htpasswd: {path: p}, access: [{repository: a, groups: [ops], actions: [pull]}]}", nil, `auth.access[0].groups: "ops" is not defined`},
		{"unknown action", "auth: {htpasswd: {path: p}, access: [{repository: a, users: [u], actions: [pull, write]}]}", nil, `auth.access[0].actions: "write"`},
		{"no actions", "auth: {htpasswd: {path: p}, access: [{repository: a, users: [u]}]}", nil, "auth.access[0].actions: required"},
		{"unknown key", "auth: {htpasswd: {path: p, paht: q}}", nil, "paht"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(c.yaml), c.env)
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

// TestAuthKeysDocumented: every key of the auth section is in the README's configuration
// reference, and the reference names no auth key that config lacks.
func TestAuthKeysDocumented(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Struct {
			if typ.Kind() == reflect.Slice {
				prefix += "[]"
			}
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct {
			keys = append(keys, prefix)
			return
		}
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			walk(prefix+"."+strings.Split(f.Tag.Get("yaml"), ",")[0], f.Type)
		}
	}
	walk("auth", reflect.TypeFor[Auth]())
	known := map[string]bool{}
	for _, k := range keys {
		known[k] = true
		if !strings.Contains(string(readme), "| `"+k+"` |") {
			t.Errorf("README does not document %s", k)
		}
	}
	inDistribution := false
	for _, line := range strings.Split(string(readme), "\n") {
		// The Distribution table names Distribution's auth keys, registryd's or not.
		if strings.HasPrefix(line, "## ") {
			inDistribution = strings.HasPrefix(line, "## Drop-in for CNCF Distribution")
		}
		if k, ok := strings.CutPrefix(line, "| `auth."); ok && !inDistribution {
			k = "auth." + k[:strings.Index(k, "`")]
			if !known[k] && k != "auth.*" && k != "auth.access" {
				t.Errorf("README documents %s, which config does not have", k)
			}
		}
	}
}
