package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	kgserver "github.com/keygate/keygate/server"
)

// Workloads, as -workload takes them: which keys the checks carry.
const (
	workloadOne     = "one"     // one key, every check: leasing hides Redis
	workloadUniform = "uniform" // -keys keys, each as likely
	workloadZipf    = "zipf"    // -keys keys, the k-th most used k^-s as often as the first
)

// workload is the keys and plan every Keygate under test gets.
type workload struct {
	name    string
	keys    int     // keys in the database; 1 for workloadOne
	zipfS   float64 // Zipf exponent, > 1
	windows int     // windows of the plan, 1 or 2
}

func (w workload) String() string {
	plan := "1 window"
	if w.windows == 2 {
		plan = "2 windows"
	}
	switch w.name {
	case workloadZipf:
		return fmt.Sprintf("%d keys, Zipf s=%.2f, plan of %s", w.keys, w.zipfS, plan)
	case workloadUniform:
		return fmt.Sprintf("%d keys, uniform, plan of %s", w.keys, plan)
	}
	return "1 key, plan of " + plan
}

func (w workload) validate() error {
	switch w.name {
	case workloadOne:
	case workloadUniform, workloadZipf:
		if w.keys < 2 || w.keys > 1_000_000 {
			return fmt.Errorf("-keys: %d is not between 2 and 1,000,000", w.keys)
		}
		if w.name == workloadZipf && !(w.zipfS > 1) {
			return fmt.Errorf("-zipf-s: %v must be above 1", w.zipfS)
		}
	default:
		return fmt.Errorf("-workload: %q is not %s, %s or %s", w.name, workloadOne, workloadUniform, workloadZipf)
	}
	if w.windows != 1 && w.windows != 2 {
		return fmt.Errorf("-windows: %d is not 1 or 2", w.windows)
	}
	return nil
}

// keyCount is how many keys to seed.
func (w workload) keyCount() int {
	if w.name == workloadOne {
		return 1
	}
	return w.keys
}

// benchPlan is the plan of the benchmark keys: far too large to deny
// anything, so every check is allowed and spends in every window.
const benchPlan = "bench"

// plans are the limits every Keygate under test enforces.
func (w workload) plans() map[string][]limits.Window {
	ws := []limits.Window{{Limit: 1_000_000_000, Period: time.Hour}}
	if w.windows == 2 {
		ws = append(ws, limits.Window{Limit: 1_000_000_000, Period: 24 * time.Hour})
	}
	return map[string][]limits.Window{benchPlan: ws}
}

// picker returns a worker's own source of key indexes in [0, n): every
// worker has its own generator, so picking shares no lock.
func (w workload) picker(worker int) func() int {
	n := w.keyCount()
	if n == 1 {
		return func() int { return 0 }
	}
	r := rand.New(rand.NewPCG(uint64(worker)+1, 0x6b657967617465))
	if w.name == workloadZipf {
		z := rand.NewZipf(r, w.zipfS, 1, uint64(n-1))
		return func() int { return int(z.Uint64()) }
	}
	return func() int { return r.IntN(n) }
}

// seedKeys creates n keys of benchPlan through the key lifecycle service
// and returns their secrets.
func seedKeys(ctx context.Context, svc *admin.Service, n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		created, err := svc.Create(ctx, admin.CreateRequest{
			Tenant: "acme", Name: fmt.Sprintf("bench-%d", i), Env: keys.EnvLive, Scopes: []string{"patients:read"}, Plan: benchPlan,
		})
		if err != nil {
			return nil, fmt.Errorf("creating bench key %d of %d: %w", i+1, n, err)
		}
		out[i] = created.Key
	}
	return out, nil
}

// config is the configuration of every Keygate under test, on the key
// database at dbFile: the defaults but for the database, its pepper and
// the bench plan.
func (w workload) config(dbFile string) config.Config {
	cfg := config.Default()
	cfg.Database.URL = "sqlite:" + dbFile
	cfg.Database.Pepper = "keygate-bench-pepper"
	for _, win := range w.plans()[benchPlan] {
		cfg.Plans[benchPlan] = append(cfg.Plans[benchPlan], config.Window{Limit: win.Limit, Period: win.Period})
	}
	return cfg
}

// keyDB is a SQLite key database seeded once per run with a workload's
// keys; each Keygate under test starts from a copy of it.
type keyDB struct {
	file string   // the seeded database, closed
	keys []string // the secrets of its keys
	dir  string
}

// seedKeyDB creates the database and its keys, through the lifecycle
// service the CLI and the admin API use. It is seeded on a memory file
// system where there is one (/dev/shm): every key is a transaction of its
// own, and 10,000 fsyncs to a disk take a minute. The copies the servers
// run on are on the ordinary temporary directory.
func seedKeyDB(ctx context.Context, w workload) (_ *keyDB, err error) {
	parent := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		parent = "/dev/shm"
	}
	dir, err := os.MkdirTemp(parent, "keygate-bench-seed-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	file := filepath.Join(dir, "k.db")
	cfg := w.config(file)
	db, err := kgserver.OpenDB(ctx, cfg, slog.New(slog.DiscardHandler), true)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("closing the seeded key database: %w", cerr)
		}
	}()
	svc, err := kgserver.NewAdmin(cfg, db)
	if err != nil {
		return nil, err
	}
	secrets, err := seedKeys(ctx, svc, w.keyCount())
	if err != nil {
		return nil, err
	}
	return &keyDB{file: file, keys: secrets, dir: dir}, nil
}

// copyTo copies the seeded database into dir and returns the copy's path.
func (k *keyDB) copyTo(dir string) (string, error) {
	dst := filepath.Join(dir, "k.db")
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(k.file + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("copying the seeded key database: %w", err)
		}
		if err := os.WriteFile(dst+suffix, data, 0o600); err != nil {
			return "", fmt.Errorf("copying the seeded key database: %w", err)
		}
	}
	return dst, nil
}

// remove deletes the seeded database.
func (k *keyDB) remove() { os.RemoveAll(k.dir) }
