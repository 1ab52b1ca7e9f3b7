package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsasync/wsasync/via"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const wait = 5 * time.Second

func start(t *testing.T) (*server, *httptest.Server) {
	s := newServer(quiet)
	hs := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); hs.Close() })
	return s, hs
}

// The page and the browser client are served.
func TestServesPageAndClient(t *testing.T) {
	_, hs := start(t)
	for path, want := range map[string]string{
		"/":           `import { Via } from "/via/via.js"`,
		"/via/via.js": "export class Via",
	} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("GET %s: %d, missing %q", path, resp.StatusCode, want)
		}
	}
}

// lines collects what the peer prints and wakes a waiter.
type lines struct {
	mu   sync.Mutex
	buf  strings.Builder
	wake chan struct{}
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (l *lines) waitFor(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.After(wait)
	for {
		l.mu.Lock()
		m := re.FindStringSubmatch(l.buf.String())
		l.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-l.wake:
		case <-deadline:
			t.Fatalf("no %v in the peer's output:\n%s", re, l.buf.String())
		}
	}
}

// The Go peer subscribes, adds a note and counts; a browser-like second
// subscriber sees the same board.
func TestPeer(t *testing.T) {
	s, hs := start(t)
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/via"
	ctx, cancel := context.WithCancel(context.Background())
	out := &lines{wake: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() { done <- runPeer(ctx, url, 10*time.Millisecond, out, quiet) }()

	out.waitFor(t, regexp.MustCompile(`count [1-9]\d*, 1 notes, 1 peers`))
	b := s.board.Get()
	if len(b.Notes) != 1 || b.Notes[0].Text != "hello from a Go peer" || !strings.HasPrefix(b.Notes[0].By, "Go peer") {
		t.Fatalf("board: %+v", b)
	}

	// Another subscriber, as a tab would be.
	other := via.New(via.Options{Logger: quiet})
	defer other.Close()
	id, err := other.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	r, err := via.Subscribe(ctx, other.Peer(id), "board", nil, Board{})
	if err != nil {
		t.Fatal(err)
	}
	var se *via.StatusError
	if err := other.Invoke(ctx, id, "board/add", "", nil); !asStatus(err, &se) || se.Status != 400 {
		t.Fatalf("empty note: %v", err)
	}
	if err := other.Invoke(ctx, id, "board/add", "from a tab", nil); err != nil {
		t.Fatal(err)
	}
	m := out.waitFor(t, regexp.MustCompile(`count (\d+), 2 notes, 2 peers`))
	n, _ := strconv.Atoi(m[1])
	w := r.Watch(ctx)
	deadline := time.After(wait)
	for b := (Board{}); len(b.Notes) != 2 || b.Peers != 2 || b.Count < n; {
		select {
		case b = <-w:
		case <-deadline:
			t.Fatalf("the other subscriber's board: %+v", b)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("the peer did not stop")
	}
}

func asStatus(err error, se **via.StatusError) bool {
	e, ok := err.(*via.StatusError)
	*se = e
	return ok
}
