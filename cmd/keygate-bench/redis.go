package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisReachable pings the Redis at url.
func redisReachable(ctx context.Context, url string) error {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	opt.MaxRetries = -1 // one attempt: a refused connection answers at once
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// redisCPUReader returns a reader of the CPU time the Redis server at url
// has used (INFO cpu: used_cpu_user + used_cpu_sys, the whole server
// process), and a func to close it.
func redisCPUReader(url string) (func() (time.Duration, error), func(), error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, nil, err
	}
	c := redis.NewClient(opt)
	read := func() (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		info, err := c.Info(ctx, "cpu").Result()
		if err != nil {
			return 0, err
		}
		return parseRedisCPU(info)
	}
	return read, func() { c.Close() }, nil
}

// parseRedisCPU adds used_cpu_user and used_cpu_sys of an INFO cpu reply.
func parseRedisCPU(info string) (time.Duration, error) {
	var total time.Duration
	found := 0
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || k != "used_cpu_user" && k != "used_cpu_sys" {
			continue
		}
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s < 0 {
			return 0, fmt.Errorf("INFO cpu: %s is %q", k, v)
		}
		total += time.Duration(s * float64(time.Second))
		found++
	}
	if found != 2 {
		return 0, errors.New("INFO cpu: no used_cpu_user and used_cpu_sys")
	}
	return total, nil
}

// startPrivateRedis runs a redis-server of this run's own on a free
// loopback port, persisting nothing, so that its CPU time is the run's
// alone. stop kills it.
func startPrivateRedis(ctx context.Context) (url string, stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("-redis-private needs redis-server on PATH: %w", err)
	}
	dir, err := os.MkdirTemp("", "keygate-bench-redis-")
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() {
		cmd.Process.Kill()
		<-exited
		os.RemoveAll(dir)
	}
	url = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := redisReachable(ctx, url); err == nil {
			return url, stop, nil
		}
		select {
		case <-exited:
			stop()
			return "", nil, fmt.Errorf("redis-server on port %d exited at start", port)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server on port %d did not answer within 10s", port)
		}
	}
}
