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
		{"valid", map[string][]Window{"test": ok, "live": {{10000, time.Hour}}, "a.b_c:d-1": {{1, time.Second}}}, nil},
		{"one request per nanosecond", map[string][]Window{"p": {{1_000_000_000, time.Second}}}, nil},
		{"no plans", nil, []string{"plans: at least one plan is required"}},
		{"empty plans", map[string][]Window{}, []string{"plans: at least one plan is required"}},
		{"no windows", map[string][]Window{"x": {}}, []string{"plans.x: needs at least one window"}},
		{"zero limit", map[string][]Window{"x": {{1, time.Second}, {0, time.Hour}}}, []string{"plans.x[1].limit: must be at least 1, got 0"}},
		{"negative limit", map[string][]Window{"x": {{-5, time.Second}}}, []string{"plans.x[0].limit: must be at least 1, got -5"}},
		{"limit beyond the nanosecond", map[string][]Window{"x": {{1_000_000_001, time.Second}}},
			[]string{"plans.x[0].limit: at most one request per nanosecond of the period (1000000000 per 1s), got 1000000001"}},
		{"sub-second period", map[string][]Window{"x": {{1, time.Second}, {1, 500 * time.Millisecond}}},
			[]string{"plans.x[1].period: must be whole seconds, at least 1s, got 500ms"}},
		{"fractional period", map[string][]Window{"x": {{1, 1500 * time.Millisecond}}},
			[]string{"plans.x[0].period: must be whole seconds, at least 1s, got 1.5s"}},
		{"zero period", map[string][]Window{"x": {{1, 0}}}, []string{"plans.x[0].period: must be whole seconds, at least 1s, got 0s"}},
		{"negative period", map[string][]Window{"x": {{1, -time.Hour}}}, []string{"plans.x[0].period: must be whole seconds, at least 1s, got -1h0m0s"}},
		{"two windows of one period", map[string][]Window{"x": {{1, time.Hour}, {2, time.Minute}, {3, time.Hour}}},
			[]string{"plans.x[2].period: 1h0m0s is already used by another window of the plan"}},
		{"empty name", map[string][]Window{"": ok}, []string{`plans: plan name "" must be 1–64 letters, digits, '.', '_', ':' or '-'`}},
		{"name with a newline", map[string][]Window{"pro\nx-evil: 1": ok}, []string{`plans: plan name "pro\nx-evil: 1" must be 1–64 letters, digits, '.', '_', ':' or '-'`}},
		{"name with a space", map[string][]Window{"pro plan": ok}, []string{`plans: plan name "pro plan" must be 1–64 letters, digits, '.', '_', ':' or '-'`}},
		{"name too long", map[string][]Window{strings.Repeat("p", 65): ok}, []string{`plans: plan name "` + strings.Repeat("p", 65) + `" must be 1–64 letters, digits, '.', '_', ':' or '-'`}},
		{"every bad field at once, sorted", map[string][]Window{
			"b": {{0, time.Hour}, {5, 1500 * time.Millisecond}},
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
	bad := map[string][]Window{"x": {{0, time.Hour}}}
	if _, err := New(Config{Plans: bad}, slog.New(slog.DiscardHandler)); err == nil || err.Error() != ValidatePlans(bad).Error() {
		t.Fatalf("New with a bad plan: %v, want %v", err, ValidatePlans(bad))
	}
	l := newLocalLimiter(t, map[string][]Window{"p": {{3, time.Second}, {10, time.Minute}}})
	if ws, ok := l.Plan("p"); !ok || len(ws) != 2 || ws[1] != (Window{10, time.Minute}) {
		t.Fatalf("Plan(p) = %v, %v", ws, ok)
	}
}

func TestNewFailuresValidation(t *testing.T) {
	t.Parallel()
	for _, w := range []Window{{0, time.Minute}, {5, 0}, {5, -time.Second}, {2, time.Nanosecond}} {
		if f, err := NewFailures(w, nil); err == nil {
			f.Close()
			t.Errorf("NewFailures(%+v) succeeded, want an error", w)
		}
	}
}
