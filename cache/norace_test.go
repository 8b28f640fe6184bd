//go:build !race

package cache

// raceDetector: the race detector is on (see race_test.go).
const raceDetector = false
