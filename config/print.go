package config

import (
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Masked is what secret settings read as in MarshalMasked (long enough to pass the
// http.secret length check, so the output loads back).
const Masked = "<masked-secret-value>"

// isSecret reports whether the key named name holds a credential: access and secret keys,
// session tokens, account keys, inline credentials, the HTTP secret, and any key whose
// name contains "password", "secret" or "token".
func isSecret(name string) bool {
	switch name {
	case "accesskey", "secretkey", "sessiontoken", "accountkey", "credentials", "secret":
		return true
	}
	return strings.Contains(name, "password") || strings.Contains(name, "secret") || strings.Contains(name, "token")
}

// MarshalMasked returns c as YAML, every key included (defaults too), with the value of
// every secret setting (see isSecret) replaced by Masked. Durations are written with
// their unit and unset backend sections are left out, so the output loads back.
func (c *Config) MarshalMasked() ([]byte, error) {
	n, err := maskedNode(reflect.ValueOf(c).Elem(), false)
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(n)
}

func maskedNode(v reflect.Value, secret bool) (*yaml.Node, error) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil, nil
		}
		v = v.Elem()
	}
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		return scalar(time.Duration(v.Int()).String()), nil
	case v.Kind() == reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			name := yamlName(t.Field(i))
			if name == "" {
				continue
			}
			child, err := maskedNode(v.Field(i), isSecret(name))
			if err != nil {
				return nil, err
			}
			if child == nil {
				continue
			}
			m.Content = append(m.Content, scalar(name), child)
		}
		return m, nil
	case secret && !v.IsZero():
		return scalar(Masked), nil
	case v.Kind() == reflect.Map && v.IsNil():
		return nil, nil
	default:
		n := &yaml.Node{}
		if err := n.Encode(v.Interface()); err != nil {
			return nil, err
		}
		return n, nil
	}
}

func scalar(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: s}
}
