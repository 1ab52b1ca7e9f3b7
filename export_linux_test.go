//go:build linux

package wsasync

import (
	"os"
	"time"
)

// PollState reports the shared poller's connections: how many are attached
// to it, and how many of those are armed, with no reader goroutine. running
// says whether the poller exists.
func PollState() (attached, armed int, running bool) {
	pollers.mu.Lock()
	running = pollers.ep != nil
	cs := make([]*conn, 0, len(pollers.conns))
	for _, c := range pollers.conns {
		cs = append(cs, c)
	}
	pollers.mu.Unlock()
	for _, c := range cs {
		c.mu.Lock()
		if c.pstate == pollArmed {
			armed++
		}
		c.mu.Unlock()
	}
	return len(cs), armed, running
}

// WSASYNC_READER_LINGER sets the linger of every connection whose options
// leave it zero, to run the whole suite in another mode ("1ns": readers park
// as soon as they have read everything; "-1ns": they never park).
func init() {
	if v := os.Getenv("WSASYNC_READER_LINGER"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			panic("WSASYNC_READER_LINGER: " + err.Error())
		}
		defaultReaderLinger = d
	}
}
