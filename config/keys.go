package config

import (
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// distributionOnly lists CNCF Distribution v3 configuration keys (and sections) that
// registryd does not implement and that are safe to ignore: a file written for
// Distribution starts, with one warning naming each of them. A key matches an entry
// equal to it or to one of its parents.
var distributionOnly = map[string]string{
	"log.hooks":                              "log hooks (mail) are not supported: ship the JSON log lines instead",
	"log.reportcaller":                       "log lines do not name the calling function",
	"reporting":                              "error reporting services (bugsnag, newrelic) are not supported",
	"notifications":                          "webhook notifications are not sent",
	"redis":                                  "no cache is used: metadata is read from the storage backend",
	"health":                                 "/readyz checks the storage backend on every probe (the storagedriver check, always on); file, http and tcp checks are not run",
	"catalog":                                "limits.maxlistentries caps n on the catalog (and tags and referrers)",
	"tags":                                   "limits.maxlistentries caps n on tags lists (and the catalog and referrers)",
	"compatibility":                          "schema1 manifests are refused; no setting changes that",
	"http.h2c":                               "cleartext HTTP/2 is not offered; HTTP/2 is served over TLS",
	"http.debug.prometheus":                  "/metrics is always served (on http.debug.addr when set, else on the main listener)",
	"http.tls.clientauth":                    "with http.tls.clientcas every client must present a certificate they signed (require-and-verify-client-cert, Distribution's default; the other modes are looser)",
	"storage.cache":                          "no blob descriptor cache is used: descriptors are read from the storage backend",
	"storage.tag":                            "tag lookups are not tuned by a concurrency limit",
	"storage.filesystem.maxthreads":          "filesystem calls are not throttled by a thread limit",
	"storage.s3.multipartcopymaxconcurrency": "storage.s3.multipartconcurrency bounds the parts of a copy",
	"storage.s3.objectownership":             "objects are written with the bucket's default ownership",
	"storage.s3.maxrequestspersecond":        "storage.retry paces retries of throttled requests",
	"storage.s3.maxretries":                  "storage.retry bounds retries",
	"storage.gcs.maxretries":                 "storage.retry bounds retries",
	"storage.azure.connectionstring":         "set storage.azure.accountname, accountkey and serviceurl",
	"storage.azure.max_retries":              "storage.retry bounds retries of every request",
	"storage.azure.retry_delay":              "storage.retry.basedelay is the first backoff",
	"storage.azure.maxretries":               "storage.retry bounds retries of every request",
	"storage.azure.retrytrydelay":            "storage.retry.basedelay is the first backoff",
	"storage.azure.copystatuspollmaxretry":   "copies are synchronous: no status to poll",
	"storage.azure.copystatuspolldelay":      "copies are synchronous: no status to poll",
	"validation.enabled":                     "manifests are always validated; validation.manifests.allowsparse relaxes reference checks",
	"validation.disabled":                    "manifests are always validated; validation.manifests.allowsparse relaxes reference checks",
	"validation.manifests.urls":              "foreign layer URLs in manifests are accepted, never checked against a list nor fetched",
	"validation.manifests.indexes":           "every child of an index must be in the repository unless validation.manifests.allowsparse is set",
	"auth.token.autoredirect":                "the token challenge always names auth.token.realm",
	"auth.token.autoredirectpath":            "the token challenge always names auth.token.realm",
}

// securityRelevant lists sections that protect the registry. registryd refuses to start
// when one is configured and it does not implement it (an auth type it lacks), rather than
// serve without the protection the operator asked for.
var securityRelevant = map[string]string{
	"auth":       "this authentication method",
	"middleware": "middleware (access control, CDN redirects)",
	"http.tls":   "this part of TLS on its listener (Let's Encrypt certificates among them)",
}

// serviceLink matches the variables Kubernetes injects for a Service (service links):
// <NAME>_SERVICE_HOST, <NAME>_SERVICE_PORT[_<PORT NAME>], <NAME>_PORT_<N>_<PROTO>[_PROTO|_PORT|_ADDR],
// and <NAME>_PORT holding a tcp://, udp:// or sctp:// URL.
var (
	serviceLink     = regexp.MustCompile(`_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT_[0-9]+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)$`)
	serviceLinkPort = regexp.MustCompile(`^(tcp|udp|sctp)://`)
)

type unknownKind int

const (
	unknownKey unknownKind = iota
	unknownDistribution
	unknownSecurity
)

// matchTable returns the entry of table for path or its nearest listed parent.
func matchTable(table map[string]string, path string) (string, string, bool) {
	for p := path; p != ""; {
		if why, ok := table[p]; ok {
			return p, why, true
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return "", "", false
}

// classifyUnknown says what to do with key path, which is no field of parent (the struct
// type holding its siblings), and the message or reason to report.
func classifyUnknown(path string, parent reflect.Type) (unknownKind, string) {
	distKey, distWhy, dist := matchTable(distributionOnly, path)
	if section, what, ok := matchTable(securityRelevant, path); ok && (!dist || len(section) > len(distKey)) {
		msg := fmt.Sprintf("registryd does not implement %s; it refuses to start rather than serve without it", what)
		if section != path && strings.Count(path, ".") == strings.Count(section, ".")+1 {
			if names := fieldNames(parent); len(names) > 0 {
				msg += " (supported here: " + strings.Join(names, ", ") + ")"
			}
		}
		return unknownSecurity, msg
	}
	if dist {
		return unknownDistribution, "a CNCF Distribution setting registryd does not implement, ignored: " + distWhy
	}
	name := path[strings.LastIndexByte(path, '.')+1:]
	parentPath := strings.TrimSuffix(strings.TrimSuffix(path, name), ".")
	if s := closest(name, fieldNames(parent)); s != "" {
		return unknownKey, fmt.Sprintf("no such key; did you mean %s?", join(parentPath, s))
	}
	if s := closestPath(name); s != "" {
		return unknownKey, fmt.Sprintf("no such key; did you mean %s?", s)
	}
	return unknownKey, fmt.Sprintf("no such key (keys here: %s)", strings.Join(fieldNames(parent), ", "))
}

// closestPath finds a known key path elsewhere in the tree whose last element is name or
// one edit away (storage.readonly → storage.maintenance.readonly).
func closestPath(name string) string {
	var paths []string
	knownPaths(reflect.TypeFor[Config](), "", &paths)
	best := ""
	for _, p := range paths {
		last := p[strings.LastIndexByte(p, '.')+1:]
		if last == name {
			return p
		}
		if best == "" && len(name) > 3 && editDistance(last, name) == 1 {
			best = p
		}
	}
	return best
}

// knownPaths appends every key path of struct type t under prefix.
func knownPaths(t reflect.Type, prefix string, out *[]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		p := join(prefix, name)
		*out = append(*out, p)
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[Notice]() {
			knownPaths(ft, p, out)
		}
	}
}

// applyEnv sets fields from REGISTRY_<PATH> variables, where PATH is the upper-cased keys
// joined by "_" (REGISTRY_STORAGE_S3_BUCKET, REGISTRY_HTTP_SECRET); a key that holds "_"
// itself (Distribution's storage.azure.max_retries) is found too. As in CNCF
// Distribution, the variables are applied in lexical order, so REGISTRY_STORAGE comes
// before REGISTRY_STORAGE_S3_BUCKET, and:
//   - REGISTRY_STORAGE=<driver> selects the driver and drops every driver section of the
//     file, that driver's own parameters included (they then come from REGISTRY_STORAGE_
//     <DRIVER>_* only), so the data is where Distribution would put it; the registry-level
//     storage settings (delete, redirect, maintenance, retry) are kept;
//   - naming a key of a driver section selects that driver too (two drivers are an error);
//   - REGISTRY_AUTH=<type> selects the authentication type in place of the file's.
//
// Maps and lists take a YAML value. See Load for variables that are no configuration key.
func applyEnv(c *Config, environ []string) []error {
	var errs []error
	var ignored []string
	environ = slices.Clone(environ)
	slices.SortFunc(environ, func(a, b string) int {
		ka, _, _ := strings.Cut(a, "=")
		kb, _, _ := strings.Cut(b, "=")
		return strings.Compare(ka, kb)
	})
	for _, kv := range environ {
		k, val, ok := strings.Cut(kv, "=")
		name, isReg := strings.CutPrefix(k, "REGISTRY_")
		if !ok || !isReg || name == "" {
			continue
		}
		switch name {
		case "STORAGE":
			if err := c.selectStorage(k, val); err != nil {
				errs = append(errs, err)
			}
			continue
		case "AUTH":
			if err := c.selectAuth(k, val); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		parts := envParts(strings.Split(strings.ToLower(name), "_"))
		path := strings.Join(parts, ".")
		if handled, err := c.setElement(parts, k, val); handled {
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		parent, ok := resolve(reflect.TypeFor[Config](), parts)
		if !ok {
			top := reflect.TypeFor[Config]()
			_, known := fieldByName(reflect.New(top).Elem(), parts[0])
			_, _, dist := matchTable(distributionOnly, path)
			_, _, sec := matchTable(securityRelevant, path)
			if serviceLink.MatchString(k) || (strings.HasSuffix(k, "_PORT") && serviceLinkPort.MatchString(val)) ||
				(!known && !dist && !sec) {
				ignored = append(ignored, k)
				continue
			}
			switch kind, msg := classifyUnknown(path, parent); kind {
			case unknownDistribution:
				c.Ignored = append(c.Ignored, Notice{Level: slog.LevelWarn, Key: path + " (" + k + ")", Reason: msg})
			default:
				errs = append(errs, &Error{Key: path, Source: k, Msg: msg})
			}
			continue
		}
		fv := reflect.ValueOf(c).Elem()
		for _, p := range parts {
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					fv.Set(reflect.New(fv.Type().Elem()))
				}
				fv = fv.Elem()
			}
			fv, _ = fieldByName(fv, p)
		}
		if err := setScalar(fv, val); err != nil {
			errs = append(errs, &Error{Key: path, Source: k, Msg: err.Error()})
			continue
		}
		c.setSource(path, k)
	}
	if len(ignored) > 0 {
		c.Ignored = append(c.Ignored, Notice{Level: slog.LevelDebug, Key: strings.Join(ignored, ", "),
			Reason: "REGISTRY_* variables that are no configuration key (such as Kubernetes service links), ignored"})
	}
	return errs
}

func (c *Config) setSource(path, variable string) {
	if c.sources == nil {
		c.sources = map[string]string{}
	}
	c.sources[path] = variable
}

// setElement applies a variable naming one element of a list or a map, as Distribution
// allows: REGISTRY_HTTP_TLS_CLIENTCAS_0=/ca.pem sets the first item of http.tls.clientcas
// (an index equal to the length appends), REGISTRY_LOG_FIELDS_ENVIRONMENT=prod the key
// "environment" of log.fields (keys are lower case, as in Distribution). It reports
// whether parts name such an element.
func (c *Config) setElement(parts []string, k, val string) (bool, error) {
	n := len(parts)
	if n < 2 {
		return false, nil
	}
	if _, ok := resolve(reflect.TypeFor[Config](), parts[:n-1]); !ok {
		return false, nil
	}
	t := reflect.TypeFor[Config]()
	for _, p := range parts[:n-1] {
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		f, _ := fieldByName(reflect.New(t).Elem(), p)
		t = f.Type()
	}
	if t.Kind() != reflect.Slice && t.Kind() != reflect.Map {
		return false, nil
	}
	fv := reflect.ValueOf(c).Elem()
	for _, p := range parts[:n-1] {
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				fv.Set(reflect.New(fv.Type().Elem()))
			}
			fv = fv.Elem()
		}
		fv, _ = fieldByName(fv, p)
	}
	path := strings.Join(parts, ".")
	elem := reflect.New(fv.Type().Elem()).Elem()
	switch fv.Kind() {
	case reflect.Slice:
		i, err := strconv.Atoi(parts[n-1])
		if err != nil {
			return false, nil //nolint:nilerr // not an index: no such key, which is the answer
		}
		if i < 0 || i > fv.Len() {
			return true, &Error{Key: path, Source: k, Msg: fmt.Sprintf("index %d: the list has %d items (an index equal to the length appends)", i, fv.Len())}
		}
		if err := setScalar(elem, val); err != nil {
			return true, &Error{Key: path, Source: k, Msg: err.Error()}
		}
		if i == fv.Len() {
			fv.Set(reflect.Append(fv, elem))
		} else {
			fv.Index(i).Set(elem)
		}
	case reflect.Map:
		if fv.Type().Key().Kind() != reflect.String {
			return false, nil
		}
		if err := setYAML(elem, val); err != nil {
			return true, &Error{Key: path, Source: k, Msg: err.Error()}
		}
		if fv.IsNil() {
			fv.Set(reflect.MakeMap(fv.Type()))
		}
		fv.SetMapIndex(reflect.ValueOf(parts[n-1]).Convert(fv.Type().Key()), elem)
	default:
		return false, nil
	}
	c.setSource(path, k)
	return true, nil
}

// envParts returns the key path of a variable's lower-cased "_"-separated parts: the parts
// themselves when they name a key or a listed Distribution key, else the first way of
// joining trailing parts with "_" that does (max, retries → max_retries).
func envParts(parts []string) []string {
	named := func(ps []string) bool {
		if _, ok := resolve(reflect.TypeFor[Config](), ps); ok {
			return true
		}
		_, _, dist := matchTable(distributionOnly, strings.Join(ps, "."))
		return dist
	}
	if named(parts) {
		return parts
	}
	for i := len(parts) - 2; i >= 1; i-- {
		for j := len(parts); j > i+1; j-- {
			ps := append(slices.Clone(parts[:i]), strings.Join(parts[i:j], "_"))
			ps = append(ps, parts[j:]...)
			if named(ps) {
				return ps
			}
		}
	}
	return parts
}

// storageDrivers are the values of REGISTRY_STORAGE, the driver sections of Storage.
var storageDrivers = []string{"filesystem", "inmemory", "s3", "gcs", "azure"}

// selectStorage applies REGISTRY_STORAGE=val (variable k): see applyEnv.
func (c *Config) selectStorage(k, val string) error {
	typ := strings.ToLower(strings.TrimSpace(val))
	if !slices.Contains(storageDrivers, typ) {
		return &Error{Key: "storage", Source: k, Msg: fmt.Sprintf("registryd has no %q storage driver (%s)", val, strings.Join(storageDrivers, ", "))}
	}
	s := &c.Storage
	var dropped []string
	for _, d := range []struct {
		name string
		set  bool
	}{{"filesystem", s.Filesystem != nil}, {"inmemory", s.InMemory != nil}, {"s3", s.S3 != nil}, {"gcs", s.GCS != nil}, {"azure", s.Azure != nil}} {
		if d.set {
			dropped = append(dropped, "storage."+d.name)
		}
	}
	s.Filesystem, s.InMemory, s.S3, s.GCS, s.Azure = nil, nil, nil, nil, nil
	switch typ {
	case "filesystem":
		s.Filesystem = &Filesystem{}
	case "inmemory":
		s.InMemory = &InMemory{}
	case "s3":
		s.S3 = &S3{}
	case "gcs":
		s.GCS = &GCS{}
	case "azure":
		s.Azure = &Azure{}
	}
	c.setSource("storage", k)
	if len(dropped) > 0 {
		c.Ignored = append(c.Ignored, Notice{Level: slog.LevelWarn, Key: strings.Join(dropped, ", ") + " (file)",
			Reason: "replaced by " + k + "=" + typ + ", as in CNCF Distribution: the driver's parameters come from " + k + "_" + strings.ToUpper(typ) + "_* only"})
	}
	return nil
}

// selectAuth applies REGISTRY_AUTH=val (variable k): the file's authentication type is
// replaced by val, with no parameters but those of REGISTRY_AUTH_<TYPE>_*; access rules and
// groups are kept. A type registryd lacks is refused.
func (c *Config) selectAuth(k, val string) error {
	typ := strings.ToLower(strings.TrimSpace(val))
	a := &c.Auth
	switch typ {
	case "htpasswd", "token", "none":
	default:
		_, msg := classifyUnknown("auth."+typ, reflect.TypeFor[Auth]())
		return &Error{Key: "auth." + typ, Source: k, Msg: msg}
	}
	a.Htpasswd, a.Token, a.None = nil, nil, nil
	switch typ {
	case "htpasswd":
		a.Htpasswd = &Htpasswd{}
	case "token":
		a.Token = &Token{}
	case "none":
		a.None = &AuthNone{}
	}
	c.setSource("auth", k)
	return nil
}

// resolve walks struct type t along parts. It reports whether they name a settable key,
// and otherwise the struct type in which the walk failed.
func resolve(t reflect.Type, parts []string) (reflect.Type, bool) {
	for i, p := range parts {
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return t, false
		}
		f, ok := fieldByName(reflect.New(t).Elem(), p)
		if !ok {
			return t, false
		}
		ft := f.Type()
		last := i == len(parts)-1
		switch {
		case last:
			return t, true
		case ft.Kind() == reflect.Struct || (ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct):
			t = ft
		default:
			return t, false
		}
	}
	return t, false
}
