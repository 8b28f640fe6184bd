package limits

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// ValidatePlans checks plans as New does, reporting every problem, each
// named by its path in the config file (plans.NAME[i].period).
func ValidatePlans(plans map[string][]Window) error {
	if len(plans) == 0 {
		return errors.New("plans: at least one plan is required")
	}
	names := make([]string, 0, len(plans))
	for name := range plans {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		ws := plans[name]
		if len(ws) == 0 {
			errs = append(errs, fmt.Errorf("plans.%s: needs at least one window", name))
		}
		// One window per period: a bucket's Redis key is named by it.
		seen := map[time.Duration]bool{}
		for i, w := range ws {
			if seen[w.Period] {
				errs = append(errs, fmt.Errorf("plans.%s[%d].period: %v is already used by another window of the plan", name, i, w.Period))
			}
			seen[w.Period] = true
			if w.Limit < 1 {
				errs = append(errs, fmt.Errorf("plans.%s[%d].limit: must be at least 1, got %d", name, i, w.Limit))
			}
			if w.Period < time.Second || w.Period%time.Second != 0 {
				errs = append(errs, fmt.Errorf("plans.%s[%d].period: must be whole seconds, at least 1s, got %v", name, i, w.Period))
			}
		}
	}
	return errors.Join(errs...)
}
