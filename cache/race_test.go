//go:build race

package cache

// raceDetector: the race detector is on. Its sync.Pool drops a quarter of
// what is put back, and ristretto counts uses (Get) in pooled stripes that
// reach TinyLFU only when full: with it on, uses are almost never counted.
const raceDetector = true
