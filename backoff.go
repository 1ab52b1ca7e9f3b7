package wsasync

import "time"

// Backoff returns how long a client waits before its reconnect attempt at the
// given level (the schedule of the sente and via clients): nothing at level 0, so that the first attempt
// after a drop goes at once, and for level n ≥ 1 a wait in [b/2, b) where
// b = minWait·2^(n-1), capped at maxWait. jitter, in [0, 1), picks the point
// in that range; drawn uniformly at random, it spreads the reconnects of many
// clients that lost the same server. A maxWait below minWait counts as
// minWait; a minWait of zero or less means no wait at all.
//
// It is a pure function so that other clients can follow the same schedule
// and tests can check it.
func Backoff(level int, minWait, maxWait time.Duration, jitter float64) time.Duration {
	if level <= 0 || minWait <= 0 {
		return 0
	}
	maxWait = max(maxWait, minWait)
	b := minWait
	for i := 1; i < level && b < maxWait; i++ {
		b *= 2 // b < maxWait here, so this cannot overflow past 2·maxWait
	}
	b = min(b, maxWait)
	jitter = min(max(jitter, 0), 1)
	half := b / 2
	d := half + time.Duration(jitter*float64(b-half))
	if d >= b { // jitter 1, or float rounding near 1
		d = b - 1
	}
	return max(d, half)
}
