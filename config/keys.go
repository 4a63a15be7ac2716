package config

import (
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
)

// distributionOnly lists CNCF Distribution v3 configuration keys (and sections) that
// registryd does not implement and that are safe to ignore: a file written for
// Distribution starts, with one warning naming each of them. A key matches an entry
// equal to it or to one of its parents.
var distributionOnly = map[string]string{
	"loglevel":                               "deprecated in Distribution; use log.level",
	"log.accesslog":                          "every request is logged at info level",
	"log.hooks":                              "log hooks are not supported",
	"log.reportcaller":                       "not supported",
	"reporting":                              "error reporting services are not supported",
	"notifications":                          "webhook notifications are not supported",
	"redis":                                  "no cache is used: lookups go to the backend",
	"health":                                 "/readyz checks the storage backend itself",
	"catalog":                                "use limits.maxlistentries",
	"proxy":                                  "pull-through caching is not supported: the registry serves only what is pushed to it",
	"compatibility":                          "schema1 manifests are not supported",
	"policy":                                 "repository classes are not supported",
	"http.net":                               "registryd listens on TCP only",
	"http.prefix":                            "serve under / (put a proxy in front for a prefix)",
	"http.h2c":                               "not configurable",
	"http.debug.prometheus":                  "/metrics is always served (on http.debug.addr when set)",
	"storage.cache":                          "no blob descriptor cache is used",
	"storage.tag":                            "not configurable",
	"storage.filesystem.maxthreads":          "not configurable",
	"storage.s3.v4auth":                      "SigV4 is always used",
	"storage.s3.loglevel":                    "use log.level: debug",
	"storage.s3.objectacl":                   "objects are written with the bucket's default ACL",
	"storage.s3.objectownership":             "objects are written with the bucket's default ownership",
	"storage.s3.usedualstack":                "not configurable; set storage.s3.regionendpoint",
	"storage.s3.accelerate":                  "not configurable; set storage.s3.regionendpoint",
	"storage.s3.multipartcopymaxconcurrency": "storage.s3.multipartconcurrency bounds copies too",
	"storage.s3.maxrequestspersecond":        "use storage.retry",
	"storage.s3.maxretries":                  "use storage.retry",
	"storage.gcs.useragent":                  "not configurable",
	"storage.gcs.maxretries":                 "use storage.retry",
	"storage.azure.credentials":              "use storage.azure.accountkey, or the default Azure credential chain",
	"storage.azure.realm":                    "use storage.azure.serviceurl",
	"storage.azure.maxretries":               "use storage.retry",
	"storage.azure.retrytrydelay":            "use storage.retry",
	"storage.azure.copystatuspollmaxretry":   "not needed: copies are synchronous",
	"storage.azure.copystatuspolldelay":      "not needed: copies are synchronous",
	"validation.enabled":                     "use validation.manifests.allowsparse",
	"validation.disabled":                    "use validation.manifests.allowsparse",
	"validation.manifests.urls":              "foreign layer URLs are neither checked nor fetched",
	"validation.manifests.indexes":           "use validation.manifests.allowsparse",
}

// securityRelevant lists sections that protect the registry. registryd refuses to start
// when one is configured and it does not implement it (an auth type it lacks), rather than
// serve without the protection the operator asked for.
var securityRelevant = map[string]string{
	"auth":       "this authentication method",
	"middleware": "middleware (access control, CDN redirects)",
	"http.tls":   "TLS on its listener",
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
	if section, what, ok := matchTable(securityRelevant, path); ok {
		msg := fmt.Sprintf("registryd does not implement %s; it refuses to start rather than serve without it", what)
		if section != path && strings.Count(path, ".") == strings.Count(section, ".")+1 {
			if names := fieldNames(parent); len(names) > 0 {
				msg += " (supported here: " + strings.Join(names, ", ") + ")"
			}
		}
		return unknownSecurity, msg
	}
	if _, why, ok := matchTable(distributionOnly, path); ok {
		return unknownDistribution, "a CNCF Distribution setting registryd does not implement, ignored: " + why
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
// joined by "_" (REGISTRY_STORAGE_S3_BUCKET, REGISTRY_HTTP_SECRET); keys contain no "_",
// so the split is unambiguous. Naming a key of a backend section selects that backend, as
// does REGISTRY_STORAGE=<backend>. Maps and lists take a YAML value. See Load for
// variables that are no configuration key.
func applyEnv(c *Config, environ []string) []error {
	var errs []error
	var ignored []string
	for _, kv := range environ {
		k, val, ok := strings.Cut(kv, "=")
		name, isReg := strings.CutPrefix(k, "REGISTRY_")
		if !ok || !isReg || name == "" {
			continue
		}
		parts := strings.Split(strings.ToLower(name), "_")
		if name == "STORAGE" {
			parts = append(parts, strings.ToLower(val))
		}
		path := strings.Join(parts, ".")
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
		if name == "STORAGE" {
			val = ""
		}
		if err := setScalar(fv, val); err != nil {
			errs = append(errs, &Error{Key: path, Source: k, Msg: err.Error()})
			continue
		}
		if c.sources == nil {
			c.sources = map[string]string{}
		}
		c.sources[path] = k
	}
	if len(ignored) > 0 {
		c.Ignored = append(c.Ignored, Notice{Level: slog.LevelDebug, Key: strings.Join(ignored, ", "),
			Reason: "REGISTRY_* variables that are no configuration key (such as Kubernetes service links), ignored"})
	}
	return errs
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
