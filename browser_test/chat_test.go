package browser_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/wsasync/wsasync/examples/chatapp"
	"github.com/wsasync/wsasync/internal/testenv"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write ../docs/chat.png from the WebSocket scenario")

// scenarioTimeout bounds one run of the node driver, browser start included.
// The driver's own watchdog (150 s) fires first.
const scenarioTimeout = 3 * time.Minute

func TestBrowserChat(t *testing.T) {
	env := needBrowser(t)

	t.Run("WebSocket", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, "127.0.0.1:0", chatapp.NewSessions())
		defer srv.stop(t)
		shot := filepath.Join(t.TempDir(), "chat.png")
		if *updateScreenshot {
			shot, _ = filepath.Abs(filepath.Join("..", "docs", "chat.png"))
			if err := os.MkdirAll(filepath.Dir(shot), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		res := env.run(t, "ws", srv.url(), shot, nil)
		res.checkChat(t, "ws")
		res.need(t, "a reload keeps the client id", "a tab opened with window.open gets its own client id")
		if fi, err := os.Stat(shot); err != nil || fi.Size() < 10_000 {
			t.Errorf("screenshot %s: %v (size %d)", shot, err, sizeOf(fi))
		}
	})

	t.Run("AjaxFallback", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, "127.0.0.1:0", chatapp.NewSessions())
		defer srv.stop(t)
		res := env.run(t, "ajax", srv.url(), "", nil)
		res.checkChat(t, "ajax")
	})

	t.Run("ServerRestart", func(t *testing.T) {
		t.Parallel()
		// The session store outlives the server, as a database would, so
		// the pages' cookies and CSRF tokens still work after the restart.
		sessions := chatapp.NewSessions()
		srv := startServer(t, "127.0.0.1:0", sessions)
		defer func() { srv.stop(t) }()
		restarts := 0
		res := env.run(t, "restart", srv.url(), "", func(need string) error {
			if need != "restart" {
				return fmt.Errorf("unknown request %q", need)
			}
			addr := srv.addr
			srv.stop(t)
			srv = startServer(t, addr, sessions) // the same port
			restarts++
			return nil
		})
		if restarts != 1 {
			t.Errorf("restarted %d times, want 1", restarts)
		}
		res.need(t,
			"before: alice open on ws",
			"before: alice's second tab open on ajax",
			"before: bob open on ws",
			"before: room message",
			"server restarted",
			"after: alice reconnected on ws",
			"after: alice's second tab reconnected on ajax",
			"after: bob reconnected on ws",
			"after: users online",
			"after: room message",
			"after: private message to both of alice's tabs",
			"at most one poll in flight per page",
			"after: close codes seen",
			"done",
		)
	})
}

// ---- the server ----

type server struct {
	addr   string
	app    *chatapp.App
	http   *http.Server
	served chan error
}

// startServer serves a new chat on addr ("127.0.0.1:0" for any port).
func startServer(t *testing.T, addr string, sessions *chatapp.Sessions) *server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := &server{addr: ln.Addr().String(), app: chatapp.New(chatapp.Options{Sessions: sessions, Logger: log}), served: make(chan error, 1)}
	s.http = &http.Server{Handler: s.app, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { s.served <- s.http.Serve(ln) }()
	return s
}

func (s *server) url() string { return "http://" + s.addr }

// stop is a restart's first half: sente closes every connection with 1012
// (clients reconnect), then the HTTP server closes the listener and the idle
// connections. Idempotent.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if s.app == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.app.Shutdown(ctx); err != nil {
		t.Errorf("chat shutdown: %v", err)
	}
	if err := s.http.Shutdown(ctx); err != nil {
		t.Errorf("http shutdown: %v", err)
		s.http.Close()
	}
	if err := <-s.served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("serve: %v", err)
	}
	s.app = nil
}

// ---- the node driver ----

type browserEnv struct{ node, chromium string }

// needBrowser skips t (fails it under WSASYNC_REQUIRE_ALL=1) unless node,
// playwright-core and Chromium are there.
func needBrowser(t *testing.T) browserEnv {
	t.Helper()
	node := testenv.LookPath(t, "node", "install Node.js 20 or later")
	_, err := os.Stat(filepath.Join("..", "node_modules", "playwright-core", "package.json"))
	testenv.Need(t, err == nil, "node_modules/playwright-core", "run `npm ci` at the repository root")
	chromium := os.Getenv("WSASYNC_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	_, err = os.Stat(chromium)
	testenv.Need(t, err == nil, "Chromium ("+chromium+")",
		"apt-get install -y chromium, or set WSASYNC_CHROMIUM to a Chromium or Chrome binary")
	return browserEnv{node: node, chromium: chromium}
}

// step is one JSON line of the driver.
type step struct {
	Step   string          `json:"step"`
	OK     bool            `json:"ok"`
	Ms     int             `json:"ms"`
	Error  string          `json:"error"`
	Detail json.RawMessage `json:"detail"`
	Need   string          `json:"need"`
}

type results map[string]step

// run runs testdata/chat.mjs for scenario against base and returns its steps
// by name; onNeed answers the driver's requests (a server restart).
func (e browserEnv) run(t *testing.T, scenario, base, screenshot string, onNeed func(string) error) results {
	t.Helper()
	return e.drive(t, scenario, []string{"chat.mjs", scenario, base, screenshot}, func(line []byte) (string, bool) {
		var s step
		if json.Unmarshal(line, &s) != nil || s.Need == "" {
			return "", false
		}
		t.Logf("driver asks: %s", s.Need)
		if err := onNeed(s.Need); err != nil {
			t.Errorf("driver asked %q: %v", s.Need, err)
			return "error", true
		}
		return "restarted", true
	})
}

// drive runs the node driver testdata/<args[0]> with the rest of args,
// hands each line it prints to answer (a request, whose answer goes back on
// its stdin, when answer reports true) or reads it as a step, and returns
// the steps by name.
func (e browserEnv) drive(t *testing.T, label string, args []string, answer func(line []byte) (string, bool)) results {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	args[0] = filepath.Join("testdata", args[0])
	cmd := exec.CommandContext(ctx, e.node, args...)
	cmd.Env = append(os.Environ(), "WSASYNC_CHROMIUM="+e.chromium)
	// Playwright closes the browser on SIGTERM; kill only if that hangs.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	res := results{}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if a, ok := answer(sc.Bytes()); ok {
			io.WriteString(stdin, a+"\n")
			continue
		}
		var s step
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Errorf("driver: unreadable line %q", sc.Bytes())
			continue
		}
		if s.OK {
			t.Logf("ok   %-50s %5d ms %s", s.Step, s.Ms, s.Detail)
		} else {
			t.Errorf("FAIL %s after %d ms:\n%s", s.Step, s.Ms, s.Error)
		}
		res[s.Step] = s
	}
	stdin.Close()
	err = cmd.Wait()
	t.Logf("%s scenario ran in %v", label, time.Since(start).Round(time.Millisecond))
	if stderr.Len() > 0 {
		t.Logf("driver stderr:\n%s", stderr.Bytes())
	}
	if err != nil {
		t.Errorf("driver: %v (context: %v)", err, ctx.Err())
	}
	return res
}

// need fails t for each step that did not pass.
func (r results) need(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if s, ok := r[n]; !ok {
			t.Errorf("step %q did not run", n)
		} else if !s.OK {
			t.Errorf("step %q failed", n)
		}
	}
}

// detail decodes the detail of step name into v.
func (r results) detail(t *testing.T, name string, v any) {
	t.Helper()
	if s, ok := r[name]; ok && s.OK {
		if err := json.Unmarshal(s.Detail, v); err != nil {
			t.Errorf("step %q: detail %s: %v", name, s.Detail, err)
		}
	}
}

// checkChat checks the steps of the chat scenario on transport.
func (r results) checkChat(t *testing.T, transport string) {
	t.Helper()
	opened := []string{"alice tab 1", "alice tab 2", "bob", "carol"}
	for _, who := range opened {
		name := who + " open on " + transport
		r.need(t, name)
		var conn struct{ State, Transport, Shown string }
		r.detail(t, name, &conn)
		if conn.State != "open" || conn.Transport != transport || conn.Shown != transport {
			t.Errorf("%s: panel shows %+v, want open on %s", who, conn, transport)
		}
	}
	r.need(t,
		"users online pushed",
		"request resolves",
		"room message: sender gets ok",
		"room message reaches every tab",
		"bob answers the room",
		"private message: sender gets ok",
		"private message reaches both of alice's tabs",
		"private message does not reach carol",
		"alice answers bob privately",
		"at most one poll in flight per page",
		"message counts",
		"done",
	)
	var users []string
	r.detail(t, "request resolves", &users)
	if want := []string{"alice", "bob", "carol"}; !reflect.DeepEqual(users, want) {
		t.Errorf("chat/users? answered %q, want %q", users, want)
	}
	var leak struct{ CarolPrivate int }
	r.detail(t, "private message does not reach carol", &leak)
	if leak.CarolPrivate != 0 {
		t.Errorf("carol got %d private messages, want 0", leak.CarolPrivate)
	}
	// [room, private] messages shown by each page: every room message once,
	// the two private ones only on alice's and bob's pages.
	var counts map[string][2]int
	r.detail(t, "message counts", &counts)
	want := map[string][2]int{"a1": {3, 2}, "a2": {3, 2}, "b": {3, 2}, "c": {3, 0}}
	if !reflect.DeepEqual(counts, want) {
		t.Errorf("messages per page [room, private] = %v, want %v", counts, want)
	}
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return 0
	}
	return fi.Size()
}
