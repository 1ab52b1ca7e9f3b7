package via_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/internal/testenv"
	"github.com/wsasync/wsasync/via"
)

// The browser client, via.js, against a Go endpoint, in Node's test runner
// (testdata/client_test.mjs; Node 20.10 or later).
func TestJSClient(t *testing.T) {
	t.Parallel() // with TestBrowserClient, after the other tests
	node := testenv.LookPath(t, "node", "install Node.js 20 or later")
	// WebSocket is global from Node 22, behind a flag in Node 20.10+.
	var flags []string
	hasWS := func(flags ...string) bool {
		args := append(flags, "-e", `process.exit(typeof WebSocket === "function" ? 0 : 1)`)
		return exec.Command(node, args...).Run() == nil
	}
	if !hasWS() {
		flags = []string{"--experimental-websocket"}
		testenv.Need(t, hasWS(flags...), "a Node.js with WebSocket (20.10 or later)", "install Node.js 20.10 or later")
	}

	js := newJSServer(t)
	raw := httptest.NewServer((&wsasync.Upgrader{Subprotocols: []string{via.Subprotocol}}).GoWebsocket(gapPublisher))
	defer raw.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	args := append(flags, "--test", "--test-reporter=spec", filepath.Join("testdata", "client_test.mjs"))
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = append(cmd.Environ(), "VIA_URL="+js.url+"/via", "VIA_PROXY_URL=ws://"+js.px.addr()+"/via", "VIA_RAW_URL="+wsURL(raw), "NODE_NO_WARNINGS=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("node:\n%s", out.Bytes())
	if err != nil {
		t.Fatalf("node: %v", err)
	}
}

// jsServer is the Go end of the via.js tests: an endpoint at /via (and
// /via/via.js) with test handlers and publications, a test page at /, and
// a proxy in front whose connections "t/cut" drops.
type jsServer struct {
	b   *via.Endpoint
	url string // ws://host:port
	px  *proxy
}

func newJSServer(t *testing.T) *jsServer {
	var mu sync.Mutex
	logs := map[string][]string{} // calls and subs per peer, in order
	logger := func(next via.Handler) via.Handler {
		return func(ctx context.Context, c *via.Call) error {
			if c.ID != "t/log" {
				s := c.ID
				if c.IsSubscription() {
					s = "sub " + s
				}
				mu.Lock()
				logs[c.Peer().ID()] = append(logs[c.Peer().ID()], s)
				mu.Unlock()
			}
			return next(ctx, c)
		}
	}
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}, Interceptors: []via.Interceptor{logger}})
	page, err := os.ReadFile(filepath.Join("testdata", "page.html"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/via", b)
	mux.Handle("/via/", b) // via.js
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	s := httptest.NewServer(mux)
	t.Cleanup(func() { b.Close(); s.Close() })
	url := wsURL(s)
	px := newProxy(t, strings.TrimPrefix(url, "ws://"))
	counter := via.NewValue(100)
	obj := via.NewValue[any](nil)
	b.Publish("t/counter", via.Shared(counter))
	b.Publish("t/obj", via.Shared(obj))
	b.Handle("t/hello", ok)
	b.Handle("t/echo", func(ctx context.Context, c *via.Call) error { return c.Reply(200, c.Body) })
	b.Handle("t/forbidden", func(ctx context.Context, c *via.Call) error {
		return c.Reply(403, map[string]string{"error": "forbidden"})
	})
	b.Handle("t/slow", func(ctx context.Context, c *via.Call) error { <-ctx.Done(); return nil })
	b.Handle("t/counter/get", func(ctx context.Context, c *via.Call) error { return c.Reply(200, counter.Get()) })
	b.Handle("t/counter/incr", func(ctx context.Context, c *via.Call) error {
		return c.Reply(200, counter.Update(func(n int) int { return n + 1 }))
	})
	b.Handle("t/obj/set", func(ctx context.Context, c *via.Call) error {
		var v any
		if err := c.Decode(&v); err != nil {
			return err
		}
		obj.Set(v)
		return nil
	})
	b.Handle("t/subs", func(ctx context.Context, c *via.Call) error {
		n := 0
		for _, s := range c.Peer().Subscriptions() {
			if s.Inbound {
				n++
			}
		}
		return c.Reply(200, n)
	})
	b.Handle("t/log", func(ctx context.Context, c *via.Call) error {
		mu.Lock()
		defer mu.Unlock()
		return c.Reply(200, logs[c.Peer().ID()])
	})
	b.Handle("t/cut", func(ctx context.Context, c *via.Call) error {
		px.cut()
		return nil
	})
	b.Handle("t/callme", func(ctx context.Context, c *via.Call) error {
		var n int
		if err := c.Decode(&n); err != nil {
			return err
		}
		p := c.Peer()
		hctx := via.WithHeaders(ctx, map[string]string{"from": "go"})
		var res struct {
			Double  int `json:"double"`
			Fail    int `json:"fail"`
			Missing int `json:"missing"`
		}
		if err := p.Invoke(hctx, "js/double", n, &res.Double); err != nil {
			return err
		}
		res.Fail = statusOf(p.Invoke(ctx, "js/fail", nil, nil))
		res.Missing = statusOf(p.Invoke(ctx, "js/missing", nil, nil))
		return c.Reply(200, res)
	})

	return &jsServer{b: b, url: url, px: px}
}

func statusOf(err error) int {
	if se, ok := err.(*via.StatusError); ok {
		return se.Status
	}
	return 0
}

// gapPublisher is a raw peer that publishes "prices" with a gap in its
// sequence numbers, then serves the resubscription.
func gapPublisher(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
	send := func(s string) { out <- wsasync.Text(s) }
	subs := 0
	for m := range in {
		var w wire
		if json.Unmarshal(m.Data, &w) != nil {
			continue
		}
		switch w.Type {
		case "sub":
			subs++
			send(`{"v":1,"type":"reply","rid":"` + w.RID + `","status":200}`)
			if subs == 1 {
				send(`{"v":1,"type":"value","key":"` + w.Key + `","sn":1,"body":{"a":1}}`)
				send(`{"v":1,"type":"patch","key":"` + w.Key + `","sn":2,"body":{"b":2}}`)
				send(`{"v":1,"type":"patch","key":"` + w.Key + `","sn":4,"body":{"c":4}}`)
				send(`{"v":1,"type":"patch","key":"` + w.Key + `","sn":3,"body":{"d":3}}`)
			} else {
				send(`{"v":1,"type":"value","key":"` + w.Key + `","sn":1,"body":{"z":1}}`)
			}
		}
	}
}
