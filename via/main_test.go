package via_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsasync/wsasync/via"
)

// Every test in the package ends with no goroutine left behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds every wait in the tests.
const wait = 5 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func wsURL(s *httptest.Server) string { return "ws" + strings.TrimPrefix(s.URL, "http") }

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// newEndpoint makes an endpoint closed at the end of the test.
func newEndpoint(t *testing.T, o via.Options) *via.Endpoint {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet
	}
	e := via.New(o)
	t.Cleanup(func() { e.Close() })
	return e
}

// serve mounts e on a test server, closed at the end of the test (after
// the endpoint, since cleanups run last first).
func serve(t *testing.T, e *via.Endpoint) string {
	t.Helper()
	s := httptest.NewServer(e)
	t.Cleanup(func() {
		e.Close()
		s.Close()
	})
	return wsURL(s)
}

// recorder keeps every event of an endpoint.
type recorder struct {
	mu     sync.Mutex
	events []via.Event
	wake   chan struct{}
}

func record(e *via.Endpoint) *recorder {
	r := &recorder{wake: make(chan struct{}, 1)}
	e.Listen(func(ev via.Event) {
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default:
		}
	})
	return r
}

// next waits for the first event from index *from on that matches, and
// moves *from past it.
func (r *recorder) next(t *testing.T, from *int, match func(via.Event) bool) via.Event {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for i := *from; i < len(r.events); i++ {
			if match(r.events[i]) {
				ev := r.events[i]
				*from = i + 1
				r.mu.Unlock()
				return ev
			}
		}
		r.mu.Unlock()
		select {
		case <-r.wake:
		case <-deadline.C:
			t.Fatalf("no matching event within %v; got %v", wait, r.kinds())
		}
	}
}

// first waits for an event that matches, from the beginning.
func (r *recorder) first(t *testing.T, match func(via.Event) bool) via.Event {
	t.Helper()
	i := 0
	return r.next(t, &i, match)
}

func (r *recorder) all(match func(via.Event) bool) []via.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []via.Event
	for _, ev := range r.events {
		if match(ev) {
			out = append(out, ev)
		}
	}
	return out
}

func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ks []string
	for _, ev := range r.events {
		ks = append(ks, ev.Kind.String())
	}
	return ks
}

func kind(k via.EventKind) func(via.Event) bool {
	return func(ev via.Event) bool { return ev.Kind == k }
}

func kindPeer(k via.EventKind, id string) func(via.Event) bool {
	return func(ev via.Event) bool { return ev.Kind == k && ev.PeerID == id }
}

// pair connects a to b (served) and returns a's id for b and b's id for a.
func pair(t *testing.T, a, b *via.Endpoint, url string) (bAtA, aAtB string) {
	t.Helper()
	ids := make(chan string, 1)
	stop := b.Listen(func(ev via.Event) {
		if ev.Kind == via.PeerConnected {
			select {
			case ids <- ev.PeerID:
			default:
			}
		}
	})
	defer stop()
	id, err := a.Connect(tctx(t), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	select {
	case aAtB = <-ids:
	case <-time.After(wait):
		t.Fatal("the server saw no peer")
	}
	return id, aAtB
}

// recv takes one value from ch within the wait bound.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("nothing received within %v", wait)
	}
	panic("unreachable")
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
