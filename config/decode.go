package config

import (
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decodeYAML decodes the YAML document data into c, key by key, so that every problem
// names its key path and line: unknown keys (see classifyUnknown), values of the wrong
// shape, unparsable sizes and durations. It returns all problems found.
func decodeYAML(c *Config, data []byte) []error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return []error{&Error{Key: "(file)", Msg: fmt.Sprintf("not valid YAML: %v (one key per line; a comment's example must be uncommented line by line)",
			strings.TrimPrefix(err.Error(), "yaml: "))}}
	}
	if len(doc.Content) == 0 {
		return nil
	}
	d := &decoder{c: c}
	d.node(doc.Content[0], reflect.ValueOf(c).Elem(), "")
	return d.errs
}

type decoder struct {
	c    *Config
	errs []error
}

func (d *decoder) fail(n *yaml.Node, key, format string, args ...any) {
	d.errs = append(d.errs, &Error{Key: key, Source: fmt.Sprintf("line %d", n.Line), Msg: fmt.Sprintf(format, args...)})
}

// node decodes n into v, the value at key path key ("" for the root).
func (d *decoder) node(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		// "inmemory:" alone selects an empty section; any other null leaves the default.
		if v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct && v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return
	}
	if n.Kind == yaml.ScalarNode && (key == "storage" || key == "auth") {
		// CNCF Distribution's short form of a section without parameters:
		// "storage: inmemory", "auth: none".
		var err error
		if key == "storage" {
			err = d.c.selectStorage(fmt.Sprintf("line %d", n.Line), n.Value)
		} else {
			err = d.c.selectAuth(fmt.Sprintf("line %d", n.Line), n.Value)
		}
		if err != nil {
			d.errs = append(d.errs, err)
		}
		return
	}
	if _, custom := v.Addr().Interface().(yaml.Unmarshaler); custom {
		// A type with its own YAML decoding (a section kept in another file may have one).
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(n, orRoot(key), "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return
	}
	switch {
	case v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.node(n, v.Elem(), key)
	case v.Kind() == reflect.Struct && v.Type() != reflect.TypeFor[time.Time]():
		if n.Kind != yaml.MappingNode {
			d.fail(n, orRoot(key), "want a mapping of keys (%s), got %s", strings.Join(fieldNames(v.Type()), ", "), describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			path := join(key, kn.Value)
			f, ok := fieldByName(v, kn.Value)
			if !ok {
				d.unknown(kn, vn, v.Type(), path)
				continue
			}
			d.node(vn, f, path)
		}
	case n.Kind == yaml.ScalarNode && isScalarKind(v):
		if err := setScalar(v, n.Value); err != nil {
			d.fail(n, key, "%v", err)
		}
	default:
		// Maps, lists and types with their own YAML decoding.
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(n, key, "want %s: %v", describeType(v.Type()), strings.TrimPrefix(err.Error(), "yaml: "))
		}
	}
}

// unknown handles a key that is not a field of t (see classifyUnknown). A whole
// security-relevant section registryd lacks is reported by its entries (auth.silly).
func (d *decoder) unknown(kn, vn *yaml.Node, t reflect.Type, path string) {
	if _, isSection := securityRelevant[path]; isSection && vn.Kind == yaml.MappingNode && len(vn.Content) > 0 {
		for i := 0; i+1 < len(vn.Content); i += 2 {
			_, hint := classifyUnknown(path+"."+vn.Content[i].Value, reflect.TypeFor[struct{}]())
			d.fail(vn.Content[i], path+"."+vn.Content[i].Value, "%s", hint)
		}
		return
	}
	switch kind, hint := classifyUnknown(path, t); kind {
	case unknownDistribution:
		d.c.Ignored = append(d.c.Ignored, Notice{Level: slog.LevelWarn, Key: path, Reason: hint})
	default:
		d.fail(kn, path, "%s", hint)
	}
}

func orRoot(key string) string {
	if key == "" {
		return "(root)"
	}
	return key
}

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Map:
		return "a mapping"
	case reflect.Slice:
		return "a list"
	default:
		return t.String()
	}
}

// yamlName is the key of a struct field ("" when it has none: yaml:"-").
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

// fieldByName returns the field of struct v whose key is name (case-insensitively, as
// environment variable names are upper case).
func fieldByName(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if n := yamlName(t.Field(i)); n != "" && strings.EqualFold(n, name) {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if n := yamlName(t.Field(i)); n != "" {
			names = append(names, n)
		}
	}
	return names
}

func isScalarKind(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64:
		return true
	case reflect.Pointer:
		return isScalarKind(reflect.New(v.Type().Elem()).Elem())
	}
	return false
}

// setScalar parses val into fv, with the same rules and messages for YAML and the
// environment: booleans (true/false, yes/no, on/off), integers, durations with a unit
// (30s, 5m, 168h), and byte sizes (int64 fields that are not durations: a number of
// bytes, or with a unit: 16MiB, 5GiB, 100MB).
func setScalar(fv reflect.Value, val string) error {
	if fv.Kind() == reflect.Pointer {
		if fv.Type().Elem().Kind() == reflect.Struct {
			// REGISTRY_STORAGE_INMEMORY= selects an empty section.
			if fv.IsNil() {
				fv.Set(reflect.New(fv.Type().Elem()))
			}
			return nil
		}
		p := reflect.New(fv.Type().Elem())
		if err := setScalar(p.Elem(), val); err != nil {
			return err
		}
		fv.Set(p)
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(val)
	case reflect.Bool:
		b, ok := parseBool(val)
		if !ok {
			return fmt.Errorf("want true or false, got %q", val)
		}
		fv.SetBool(b)
	case reflect.Int64:
		if fv.Type() == reflect.TypeFor[time.Duration]() {
			d, err := parseDuration(val)
			if err != nil {
				return err
			}
			fv.SetInt(int64(d))
			return nil
		}
		n, err := parseSize(val)
		if err != nil {
			return err
		}
		fv.SetInt(n)
	case reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil {
			return fmt.Errorf("want an integer, got %q", val)
		}
		fv.SetInt(int64(n))
	case reflect.Slice:
		// A list of strings from the environment: a YAML flow sequence ([a, b]), or
		// comma-separated (REGISTRY_HTTP_TLS_CLIENTCAS=/a.pem,/b.pem).
		if t := strings.TrimSpace(val); fv.Type().Elem().Kind() == reflect.String && !strings.HasPrefix(t, "[") {
			items := reflect.MakeSlice(fv.Type(), 0, 0)
			for _, s := range strings.Split(t, ",") {
				if s = strings.TrimSpace(s); s != "" {
					items = reflect.Append(items, reflect.ValueOf(s).Convert(fv.Type().Elem()))
				}
			}
			fv.Set(items)
			return nil
		}
		return setYAML(fv, val)
	default:
		return setYAML(fv, val)
	}
	return nil
}

// setYAML decodes a map or list given as YAML (flow style works:
// REGISTRY_HTTP_HEADERS='{X-Frame-Options: [DENY]}').
func setYAML(fv reflect.Value, val string) error {
	if err := yaml.Unmarshal([]byte(val), fv.Addr().Interface()); err != nil {
		return fmt.Errorf("want %s in YAML: %v", describeType(fv.Type()), strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}

func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "on", "1":
		return true, true
	case "false", "no", "off", "0":
		return false, true
	}
	return false, false
}

// parseDuration accepts Go durations with a unit; a bare number is refused (but 0), since
// YAML decoders disagree on whether it means nanoseconds or seconds.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration with a unit (e.g. 500ms, 30s, 5m, 168h), got %q", s)
	}
	return d, nil
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first.
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"b", 1},
}

// parseSize parses a byte count: an integer, or a number with a unit (KiB, MiB, GiB,
// TiB are powers of 1024; KB, MB, GB, TB of 1000; B is bytes), case-insensitively.
func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	bad := fmt.Errorf("want a size in bytes: an integer or a number with a unit (16MiB, 5GiB, 100MB), got %q", s)
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		return n, nil
	}
	for _, u := range sizeUnits {
		num, ok := strings.CutSuffix(t, u.suffix)
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*float64(u.mult) > math.MaxInt64 {
			return 0, bad
		}
		return int64(f * float64(u.mult)), nil
	}
	return 0, bad
}

// closest returns the candidate nearest to name by edit distance, if near enough to be a
// plausible typo.
func closest(name string, candidates []string) string {
	best, bestD := "", math.MaxInt
	for _, c := range candidates {
		if len(name) >= 4 && (strings.HasPrefix(c, name) || strings.HasPrefix(name, c)) {
			return c
		}
		if d := editDistance(name, c); d < bestD {
			best, bestD = c, d
		}
	}
	if bestD <= max(2, len(name)/3) {
		return best
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
