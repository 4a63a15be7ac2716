package main

import (
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/registryd/registryd/config"
)

// newLogger returns the process logger for cfg: JSON or text, at cfg.Level, with
// cfg.Fields on every line, durations written with their unit and multi-line error
// texts folded onto one line (see replaceAttr).
func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	log := slog.New(handler(cfg.Formatter, w, level))
	if len(cfg.Fields) > 0 {
		keys := make([]string, 0, len(cfg.Fields))
		for k := range cfg.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		args := make([]any, 0, 2*len(keys))
		for _, k := range keys {
			args = append(args, k, cfg.Fields[k])
		}
		log = log.With(args...)
	}
	return log
}

func handler(format string, w io.Writer, level slog.Level) slog.Handler {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: replaceAttr}
	if format == "text" {
		return slog.NewTextHandler(w, opts)
	}
	return slog.NewJSONHandler(w, opts)
}

// replaceAttr writes durations as strings with a unit ("74.8ms", "168h0m0s"; parseable by
// time.ParseDuration), rounded to a readable precision, and errors whose text spans lines
// (SDK dumps) as one line.
func replaceAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindDuration:
		return slog.String(a.Key, formatDuration(a.Value.Duration()))
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			if s := err.Error(); strings.ContainsAny(s, "\r\n") {
				return slog.String(a.Key, oneLine(s))
			}
		}
	case slog.KindString:
		if s := a.Value.String(); strings.ContainsAny(s, "\r\n") && a.Key == "error" {
			return slog.String(a.Key, oneLine(s))
		}
	}
	return a
}

// formatDuration rounds d to three or more significant digits: 74.822µs, 74.8ms... no
// sub-millisecond digits past a second, no sub-second ones past a minute.
func formatDuration(d time.Duration) string {
	switch abs := max(d, -d); {
	case abs >= time.Minute:
		d = d.Round(time.Second)
	case abs >= time.Second:
		d = d.Round(time.Millisecond)
	case abs >= time.Millisecond:
		d = d.Round(time.Microsecond)
	}
	return d.String()
}

// oneLine folds every run of white space (newlines included) into one space.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// bootLogger is the logger for problems found before the configuration is loaded (an
// invalid configuration): in the format the configuration asks for where that much can be
// read (REGISTRY_LOG_FORMATTER, or log.formatter in the file even when the rest of it is
// invalid), else text on a terminal and JSON otherwise.
func bootLogger(w io.Writer, file string, environ []string) *slog.Logger {
	format := ""
	if file != "" {
		if data, err := os.ReadFile(file); err == nil {
			var partial struct {
				Log struct {
					Formatter string `yaml:"formatter"`
				} `yaml:"log"`
			}
			_ = yaml.Unmarshal(data, &partial)
			format = partial.Log.Formatter
		}
	}
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "REGISTRY_LOG_FORMATTER="); ok {
			format = v
		}
	}
	if format != "json" && format != "text" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	return slog.New(handler(format, w, slog.LevelInfo))
}
