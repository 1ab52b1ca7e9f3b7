// Package testenv lets tests that need something from the machine (node and
// the npm ws package, Chromium, Redis, NATS) skip where it is missing, and
// fail instead when WSASYNC_REQUIRE_ALL=1, which CI sets.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireVar is the environment variable that turns a missing dependency from
// a skip into a failure.
const RequireVar = "WSASYNC_REQUIRE_ALL"

// Need skips t (or fails it under RequireVar=1) when ok is false, saying what
// is missing and how to get it.
func Need(t testing.TB, ok bool, what, how string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv(RequireVar) == "1" {
		t.Fatalf("%s is missing (%s=1 makes that a failure): %s", what, RequireVar, how)
	}
	t.Skipf("skipped: %s is missing: %s", what, how)
}

// LookPath returns the path of the command name, or "" after skipping (or
// failing) t.
func LookPath(t testing.TB, name, how string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Need(t, err == nil, name, how)
	return p
}
