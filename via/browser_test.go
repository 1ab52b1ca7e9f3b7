package via_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsasync/wsasync/internal/testenv"
)

// via.js in headless Chromium, driven by playwright-core from Node
// (testdata/browser.mjs): two tabs follow a subscription, calls resolve and
// reject as documented, and the tabs reconnect and resubscribe after their
// connections drop. It needs node, `npm ci` at the repository root
// (playwright-core) and Chromium at /usr/bin/chromium (or
// WSASYNC_CHROMIUM); without them it skips (fails under
// WSASYNC_REQUIRE_ALL=1).
func TestBrowserClient(t *testing.T) {
	t.Parallel() // with TestJSClient, after the other tests
	node := testenv.LookPath(t, "node", "install Node.js 20 or later")
	_, err := os.Stat(filepath.Join("..", "node_modules", "playwright-core", "package.json"))
	testenv.Need(t, err == nil, "node_modules/playwright-core", "run `npm ci` at the repository root")
	chromium := os.Getenv("WSASYNC_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	_, err = os.Stat(chromium)
	testenv.Need(t, err == nil, "Chromium ("+chromium+")", "apt-get install -y chromium, or set WSASYNC_CHROMIUM")

	js := newJSServer(t)
	base := "http://" + js.px.addr() // through the proxy that t/cut drops

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("testdata", "browser.mjs"), base)
	cmd.Env = append(os.Environ(), "WSASYNC_CHROMIUM="+chromium)
	// Playwright closes the browser on SIGTERM; kill only if that hangs.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	passed := map[string]bool{}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s struct {
			Step   string          `json:"step"`
			OK     bool            `json:"ok"`
			Ms     int             `json:"ms"`
			Error  string          `json:"error"`
			Detail json.RawMessage `json:"detail"`
		}
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Errorf("driver: unreadable line %q", sc.Bytes())
			continue
		}
		if s.OK {
			t.Logf("ok   %-45s %5d ms %s", s.Step, s.Ms, s.Detail)
		} else {
			t.Errorf("FAIL %s after %d ms:\n%s", s.Step, s.Ms, s.Error)
		}
		passed[s.Step] = s.OK
	}
	err = cmd.Wait()
	if stderr.Len() > 0 {
		t.Logf("driver stderr:\n%s", stderr.Bytes())
	}
	if err != nil {
		t.Errorf("driver: %v", err)
	}
	for _, name := range []string{
		"two tabs subscribe",
		"an invoke in one tab reaches both",
		"invoke rejects with status, timeout",
		"tabs reconnect and resubscribe after a drop",
		"unsubscribe",
		"no page errors",
		"done",
	} {
		if !passed[name] {
			t.Errorf("step %q did not pass", name)
		}
	}
	// The tabs are gone: so are their subscriptions.
	waitEmpty(t, js.b)
	if t.Failed() {
		t.Logf("peers left: %s", strings.Join(peerIDs(js), ", "))
	}
}

func peerIDs(js *jsServer) []string {
	var ids []string
	for _, p := range js.b.Peers() {
		ids = append(ids, p.ID)
	}
	return ids
}
