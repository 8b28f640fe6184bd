package limits

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestValidatePlans(t *testing.T) {
	t.Parallel()
	ok := []Window{{Limit: 100, Period: time.Hour}, {Limit: 1000, Period: 24 * time.Hour}}
	cases := []struct {
		name  string
		plans map[string][]Window
		want  []string // every error, in order; none: valid
	}{
		{"valid", map[string][]Window{"test": ok, "live": {{Limit: 10000, Period: time.Hour}}, "a.b_c:d-1": {{Limit: 1, Period: time.Second}}}, nil},
		{"one request per nanosecond", map[string][]Window{"p": {{Limit: 1_000_000_000, Period: time.Second}}}, nil},
		{"no plans", nil, []string{"plans: at least one plan is required"}},
		{"empty plans", map[string][]Window{}, []string{"plans: at least one plan is required"}},
		{"no windows", map[string][]Window{"x": {}}, []string{"plans.x: needs at least one window"}},
		{"zero limit", map[string][]Window{"x": {{Limit: 1, Period: time.Second}, {Limit: 0, Period: time.Hour}}}, []string{"plans.x[1].limit: must be at least 1, got 0"}},
		{"negative limit", map[string][]Window{"x": {{Limit: -5, Period: time.Second}}}, []string{"plans.x[0].limit: must be at least 1, got -5"}},
		{"limit beyond the nanosecond", map[string][]Window{"x": {{Limit: 1_000_000_001, Period: time.Second}}},
			[]string{"plans.x[0].limit: at most one request per nanosecond of the period (1000000000 per 1s), got 1000000001"}},
		{"sub-second period", map[string][]Window{"x": {{Limit: 1, Period: time.Second}, {Limit: 1, Period: 500 * time.Millisecond}}},
			[]string{"plans.x[1].period: must be whole seconds, at least 1s, got 500ms"}},
		{"fractional period", map[string][]Window{"x": {{Limit: 1, Period: 1500 * time.Millisecond}}},
			[]string{"plans.x[0].period: must be whole seconds, at least 1s, got 1.5s"}},
		{"zero period", map[string][]Window{"x": {{Limit: 1, Period: 0}}}, []string{"plans.x[0].period: must be whole seconds, at least 1s, got 0s"}},
		{"negative period", map[string][]Window{"x": {{Limit: 1, Period: -time.Hour}}}, []string{"plans.x[0].period: must be whole seconds, at least 1s, got -1h0m0s"}},
		{"two windows of one period", map[string][]Window{"x": {{Limit: 1, Period: time.Hour}, {Limit: 2, Period: time.Minute}, {Limit: 3, Period: time.Hour}}},
			[]string{"plans.x[2].period: 1h0m0s is already used by another window of the plan"}},
		{"empty name", map[string][]Window{"": ok}, []string{`plans: plan name "" must be 1–64 letters, digits, '.', '_', ':' or '-'`}},
		{"name with a newline", map[string][]Window{"pro\nx-evil: 1": ok}, []string{`plans: plan name "pro\nx-evil: 1" must be 1–64 letters, digits, '.', '_', ':' or '-'`}},
		{"name with a space", map[string][]Window{"pro plan": ok}, []string{`plans: plan name "pro plan" must be 1–64 letters, digits, '.', '_', ':' or '-'`}},
		{"name too long", map[string][]Window{strings.Repeat("p", 65): ok}, []string{`plans: plan name "` + strings.Repeat("p", 65) + `" must be 1–64 letters, digits, '.', '_', ':' or '-'`}},
		{"every bad field at once, sorted", map[string][]Window{
			"b": {{Limit: 0, Period: time.Hour}, {Limit: 5, Period: 1500 * time.Millisecond}},
			"a": {},
		}, []string{
			"plans.a: needs at least one window",
			"plans.b[0].limit: must be at least 1, got 0",
			"plans.b[1].period: must be whole seconds, at least 1s, got 1.5s",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidatePlans(tc.plans)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("ValidatePlans: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidatePlans = nil, want %q", tc.want)
			}
			var joined interface{ Unwrap() []error }
			if !errors.As(err, &joined) {
				t.Fatalf("ValidatePlans returned a %T, want joined field errors", err)
			}
			var got []string
			for _, e := range joined.Unwrap() {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("ValidatePlans errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestNewValidatesPlans: New refuses what ValidatePlans refuses, with the
// same text, and builds a plan from every window it accepts.
func TestNewValidatesPlans(t *testing.T) {
	t.Parallel()
	bad := map[string][]Window{"x": {{Limit: 0, Period: time.Hour}}}
	if _, err := New(Config{Plans: bad}, slog.New(slog.DiscardHandler)); err == nil || err.Error() != ValidatePlans(bad).Error() {
		t.Fatalf("New with a bad plan: %v, want %v", err, ValidatePlans(bad))
	}
	l := newLocalLimiter(t, map[string][]Window{"p": {{Limit: 3, Period: time.Second}, {Limit: 10, Period: time.Minute}}})
	if ws, ok := l.Plan("p"); !ok || len(ws) != 2 || ws[1] != (Window{Limit: 10, Period: time.Minute}) {
		t.Fatalf("Plan(p) = %v, %v", ws, ok)
	}
}

func TestNewFailuresValidation(t *testing.T) {
	t.Parallel()
	for _, w := range []Window{{Limit: 0, Period: time.Minute}, {Limit: 5, Period: 0}, {Limit: 5, Period: -time.Second}, {Limit: 2, Period: time.Nanosecond}} {
		if f, err := NewFailures(w, nil); err == nil {
			f.Close()
			t.Errorf("NewFailures(%+v) succeeded, want an error", w)
		}
	}
}

// TestValidatePlansPer: per is key or tenant, and a period is used once
// per kind of window.
func TestValidatePlansPer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		ws   []Window
		want string // "" valid
	}{
		{"both kinds of one period", []Window{{Limit: 10, Period: time.Minute}, {Limit: 100, Period: time.Minute, Per: PerTenant}}, ""},
		{"key spelled out", []Window{{Limit: 10, Period: time.Minute, Per: PerKey}, {Limit: 100, Period: time.Hour, Per: PerTenant}}, ""},
		{"tenant only", []Window{{Limit: 100, Period: time.Minute, Per: PerTenant}}, ""},
		{"unknown per", []Window{{Limit: 10, Period: time.Minute, Per: "team"}}, `plans.p[0].per: "team" is not key or tenant`},
		{"two tenant windows of one period", []Window{{Limit: 10, Period: time.Minute, Per: PerTenant}, {Limit: 20, Period: time.Minute, Per: PerTenant}},
			"plans.p[1].period: 1m0s is already used by another per-tenant window of the plan"},
		{"default and key of one period", []Window{{Limit: 10, Period: time.Minute}, {Limit: 20, Period: time.Minute, Per: PerKey}},
			"plans.p[1].period: 1m0s is already used by another window of the plan"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidatePlans(map[string][]Window{"p": tc.ws})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("ValidatePlans: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("ValidatePlans = %v, want %q", err, tc.want)
			}
		})
	}
}
