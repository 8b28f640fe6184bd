package limits

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// ValidatePlans checks plans as Keygate's configuration names them and
// reports every bad field, each error naming its path the way the
// configuration file does: `plans.NAME[i].period: …`. The errors are
// joined (errors.Join) and sorted by text, so a caller that collects
// field errors of its own can unwrap them (Unwrap() []error) and merge.
//
// The rules: at least one plan; a plan name of 1–64 letters, digits, '.',
// '_', ':' or '-' (it is sent upstream in a header); at least one window
// per plan; each window's limit at least 1 and at most one request per
// nanosecond of its period; each period whole seconds, at least 1s, and
// used by one window of the plan only among its windows of the same per
// (a bucket's Redis key is named by its window's period); per empty, "key"
// or "tenant".
func ValidatePlans(plans map[string][]Window) error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if len(plans) == 0 {
		bad("plans", "at least one plan is required")
	}
	for name, windows := range plans {
		if !planName(name) {
			bad("plans", "plan name %q must be 1–64 letters, digits, '.', '_', ':' or '-'", name)
		}
		if len(windows) == 0 {
			bad("plans."+name, "needs at least one window")
		}
		periods := map[Window]bool{}
		for i, w := range windows {
			switch w.Per {
			case "", PerKey, PerTenant:
			default:
				bad(fmt.Sprintf("plans.%s[%d].per", name, i), "%q is not key or tenant", w.Per)
			}
			seen := Window{Period: w.Period, Per: w.Per.orKey()}
			if periods[seen] {
				kind := ""
				if seen.Per == PerTenant {
					kind = "per-tenant "
				}
				bad(fmt.Sprintf("plans.%s[%d].period", name, i), "%v is already used by another %swindow of the plan", w.Period, kind)
			}
			periods[seen] = true
			if w.Limit < 1 {
				bad(fmt.Sprintf("plans.%s[%d].limit", name, i), "must be at least 1, got %d", w.Limit)
			} else if w.Period > 0 && int64(w.Limit) > int64(w.Period) {
				// The in-process GCRA counts in whole nanoseconds per request.
				bad(fmt.Sprintf("plans.%s[%d].limit", name, i), "at most one request per nanosecond of the period (%d per %v), got %d", int64(w.Period), w.Period, w.Limit)
			}
			if w.Period < time.Second || w.Period%time.Second != 0 {
				bad(fmt.Sprintf("plans.%s[%d].period", name, i), "must be whole seconds, at least 1s, got %v", w.Period)
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// planName reports whether name is a plan name ValidatePlans accepts.
func planName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := range len(name) {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// orKey is per with its default filled in.
func (p Per) orKey() Per {
	if p == "" {
		return PerKey
	}
	return p
}
