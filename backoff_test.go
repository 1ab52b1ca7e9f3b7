package wsasync_test

import (
	"testing"
	"time"

	"github.com/wsasync/wsasync"
)

func TestBackoff(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		level    int
		min, max time.Duration
		jitter   float64
		want     time.Duration
	}{
		{0, 500 * ms, 30 * time.Second, 0.7, 0}, // first attempt at once
		{-1, 500 * ms, 30 * time.Second, 0.7, 0},
		{1, 500 * ms, 30 * time.Second, 0, 250 * ms},
		{1, 500 * ms, 30 * time.Second, 0.5, 375 * ms},
		{2, 500 * ms, 30 * time.Second, 0, 500 * ms},
		{3, 500 * ms, 30 * time.Second, 0.5, 1500 * ms},
		{7, 500 * ms, 30 * time.Second, 0, 15 * time.Second}, // 32 s capped at 30 s
		{7, 500 * ms, 30 * time.Second, 0.5, 22500 * ms},
		{1 << 30, 500 * ms, 30 * time.Second, 0, 15 * time.Second}, // no overflow
		{1, 500 * ms, 30 * time.Second, 1, 500*ms - 1},             // below b even at 1
		{1, 500 * ms, 30 * time.Second, -3, 250 * ms},              // clamped
		{3, 500 * ms, 100 * ms, 0, 250 * ms},                       // max below min: min
		{1, 0, 30 * time.Second, 0.5, 0},                           // no minimum: no wait
		{2, 20 * ms, 200 * ms, 0, 20 * ms},
		{5, 20 * ms, 200 * ms, 0.5, 150 * ms},
	} {
		if got := wsasync.Backoff(tc.level, tc.min, tc.max, tc.jitter); got != tc.want {
			t.Errorf("Backoff(%d, %v, %v, %v) = %v, want %v", tc.level, tc.min, tc.max, tc.jitter, got, tc.want)
		}
	}
	// Every jitter lands in [b/2, b).
	for level := 1; level <= 10; level++ {
		b := min(500*ms<<(level-1), 30*time.Second)
		for _, j := range []float64{0, 0.1, 0.5, 0.9, 0.999999999999} {
			if d := wsasync.Backoff(level, 500*ms, 30*time.Second, j); d < b/2 || d >= b {
				t.Errorf("level %d jitter %v: %v outside [%v, %v)", level, j, d, b/2, b)
			}
		}
	}
}
