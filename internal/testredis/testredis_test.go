package testredis

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestServerKillRestart(t *testing.T) {
	s := Start(t)
	opts, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	s.Kill()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("ping after Kill succeeded")
	}
	s.Restart()
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("ping after Restart: %v", err)
	}
	// Nothing persists across a restart.
	if n, err := rdb.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("exists k after restart = %d, %v; want 0, nil", n, err)
	}
}

func TestCluster(t *testing.T) {
	c := StartCluster(t, 3)
	u := c.URL()
	want := "redis+cluster://" + c.Nodes[0].Addr() + "?addr=" + c.Nodes[1].Addr() + "&addr=" + c.Nodes[2].Addr()
	if u != want {
		t.Fatalf("URL() = %q, want %q", u, want)
	}
	opts, err := redis.ParseClusterURL(strings.Replace(u, "+cluster", "", 1))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClusterClient(opts)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		if err := rdb.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("set %s on the cluster: %v", k, err)
		}
	}
	for _, s := range c.Nodes {
		info, err := clusterInfo(s.Addr())
		if err != nil || !strings.Contains(info, "cluster_size:3") {
			t.Fatalf("node %s: cluster info %q, %v; want cluster_size:3", s.Addr(), info, err)
		}
	}
}

func TestSharedURL(t *testing.T) {
	t.Setenv("KEYGATE_TEST_REDIS_URL", "")
	if got := SharedURL(); got != DefaultSharedURL {
		t.Fatalf("SharedURL() = %q, want %q", got, DefaultSharedURL)
	}
	t.Setenv("KEYGATE_TEST_REDIS_URL", "redis://example:1/2")
	if got := SharedURL(); got != "redis://example:1/2" {
		t.Fatalf("SharedURL() = %q, want the env value", got)
	}
}
