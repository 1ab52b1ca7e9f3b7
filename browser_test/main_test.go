// Package browser_test runs the chat demo (examples/chat) in headless
// Chromium, driven by playwright-core from Node: the sente browser client on
// WebSocket, on its Ajax fallback, and across a server restart.
//
// It needs node, `npm ci` at the repository root (playwright-core) and
// Chromium at /usr/bin/chromium (Debian: apt-get install chromium; elsewhere
// set WSASYNC_CHROMIUM to its path). Without them the tests skip, or fail
// under WSASYNC_REQUIRE_ALL=1.
package browser_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test in the package ends with no goroutine left behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
