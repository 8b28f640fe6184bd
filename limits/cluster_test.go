package limits

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
)

// TestCluster: two replicas on a three-node Redis Cluster hold a
// multi-window plan exactly, and one bucket's keys share a hash slot.
func TestCluster(t *testing.T) {
	t.Parallel()
	c := testredis.StartCluster(t, 3)
	hour, day := Window{Limit: 60, Period: time.Hour}, Window{Limit: 25, Period: 24 * time.Hour}
	plans := map[string][]Window{"p": {hour, day}}
	a := newRedisLimiter(t, Config{Plans: plans, RedisURL: c.URL()})
	b := newRedisLimiter(t, Config{Plans: plans, RedisURL: c.URL(), KeyPrefix: a.cfg.KeyPrefix})
	if _, ok := a.rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("client for %s is a %T, want a cluster client", c.URL(), a.rdb)
	}
	buckets := []string{"lineage-1", "lineage-2", "lineage-3", "lineage-4"}
	var wg sync.WaitGroup
	got := make([][2]int64, len(buckets))
	for i, bucket := range buckets {
		for j, l := range []*Limiter{a, b} {
			wg.Go(func() { got[i][j] = hammer(t, l, bucket, "p", 3, 12) })
		}
	}
	wg.Wait()
	for i, bucket := range buckets {
		if n := got[i][0] + got[i][1]; n != 25 {
			t.Errorf("bucket %s: allowed %d + %d = %d, want exactly 25", bucket, got[i][0], got[i][1], n)
		}
	}
	for _, l := range []*Limiter{a, b} {
		if st := l.Stats(); st.RedisErrors != 0 || !st.RedisUp {
			t.Errorf("stats %+v, want no Redis errors", st)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	slots := map[int64]bool{}
	for _, bucket := range buckets {
		k1, k2 := "rate:"+a.redisKey(bucket, hour), "rate:"+a.redisKey(bucket, day)
		s1, err1 := a.rdb.ClusterKeySlot(ctx, k1).Result()
		s2, err2 := a.rdb.ClusterKeySlot(ctx, k2).Result()
		if err1 != nil || err2 != nil || s1 != s2 {
			t.Fatalf("CLUSTER KEYSLOT %s = %d, %v; %s = %d, %v; want one slot", k1, s1, err1, k2, s2, err2)
		}
		slots[s1] = true
		// Both keys exist: the bucket was really spent on the cluster.
		if n, err := a.rdb.Exists(ctx, k1).Result(); err != nil || n != 1 {
			t.Fatalf("EXISTS %s = %d, %v", k1, n, err)
		}
		if n, err := a.rdb.Exists(ctx, k2).Result(); err != nil || n != 1 {
			t.Fatalf("EXISTS %s = %d, %v", k2, n, err)
		}
	}
	t.Logf("%d buckets over %d hash slots", len(buckets), len(slots))
}
