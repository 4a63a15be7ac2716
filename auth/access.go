package auth

import (
	"fmt"
	"strings"
)

// rules are compiled access rules: the union of what each matching rule grants.
type rules struct {
	list []compiledRule
}

type compiledRule struct {
	glob      []globToken
	users     map[string]bool // "*" is every authenticated caller
	anonymous bool
	actions   map[string]bool
}

// compileRules expands groups into users and compiles the globs.
func compileRules(rs []Rule, groups map[string][]string) (*rules, error) {
	out := &rules{}
	for i, r := range rs {
		cr := compiledRule{glob: compileGlob(r.Repository), users: map[string]bool{}, anonymous: r.Anonymous,
			actions: map[string]bool{}}
		if r.Repository == "" {
			return nil, fmt.Errorf("auth: access rule %d: empty repository glob", i)
		}
		for _, u := range r.Users {
			cr.users[u] = true
		}
		for _, g := range r.Groups {
			members, ok := groups[g]
			if !ok {
				return nil, fmt.Errorf("auth: access rule %d: group %q is not defined", i, g)
			}
			for _, u := range members {
				cr.users[u] = true
			}
		}
		for _, a := range r.Actions {
			switch a {
			case Pull, Push, Delete:
				cr.actions[a] = true
			default:
				return nil, fmt.Errorf("auth: access rule %d: unknown action %q", i, a)
			}
		}
		out.list = append(out.list, cr)
	}
	return out, nil
}

// anonymous reports whether a rule grants action on repo to every caller.
func (rs *rules) anonymous(repo, action string) bool {
	for _, r := range rs.list {
		if r.anonymous && r.actions[action] && matchGlob(r.glob, repo) {
			return true
		}
	}
	return false
}

// allow reports whether a rule grants action on repo to id.
func (rs *rules) allow(id Identity, repo, action string) bool {
	for _, r := range rs.list {
		if !r.actions[action] || !matchGlob(r.glob, repo) {
			continue
		}
		if r.anonymous || id.Authenticated && (r.users["*"] || r.users[id.Name]) {
			return true
		}
	}
	return false
}

// globToken is one element of a repository glob: a literal byte, "?", "*" or "**".
type globToken struct {
	kind byte // 'c' literal, '?', '*' (within a component), 'A' (** across components)
	c    byte
}

func compileGlob(p string) []globToken {
	var out []globToken
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**"):
			out = append(out, globToken{kind: 'A'})
			i++
		case p[i] == '*':
			out = append(out, globToken{kind: '*'})
		case p[i] == '?':
			out = append(out, globToken{kind: '?'})
		default:
			out = append(out, globToken{kind: 'c', c: p[i]})
		}
	}
	return out
}

// matchGlob matches name against a compiled glob in O(len(glob)·len(name)): "*" matches
// any run of characters other than "/", "**" any run at all, "?" one character other than
// "/", everything else itself.
func matchGlob(g []globToken, name string) bool {
	// cur[j]: the tokens so far match name[:j].
	cur := make([]bool, len(name)+1)
	next := make([]bool, len(name)+1)
	cur[0] = true
	for _, t := range g {
		clear(next)
		for j := 0; j <= len(name); j++ {
			switch t.kind {
			case 'A':
				next[j] = cur[j] || j > 0 && next[j-1]
			case '*':
				next[j] = cur[j] || j > 0 && next[j-1] && name[j-1] != '/'
			case '?':
				next[j] = j > 0 && cur[j-1] && name[j-1] != '/'
			default:
				next[j] = j > 0 && cur[j-1] && name[j-1] == t.c
			}
		}
		cur, next = next, cur
	}
	return cur[len(name)]
}
