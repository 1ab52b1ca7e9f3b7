package browser_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/wsasync/wsasync/sente"
)

// Resuming in a real browser (sente/PROTOCOL.md §6): a page of sente's
// client.js receives a numbered stream of pushes from a sente.Server through a
// TCP proxy that the test resets (RST) mid-stream, and must get every number
// exactly once, in order, over WebSocket and over Ajax; a reload resumes from
// the position kept in sessionStorage; a client away for longer than the
// server's history learns it (state.lost). testdata/resume.mjs drives the
// page and asks for the pushes and the cuts.

// TestBrowserResume: cuts mid-stream, some of them holding the network down
// for a while, then a reload while pushes are made, on both transports.
func TestBrowserResume(t *testing.T) {
	env := needBrowser(t)
	for _, tr := range []struct{ name, transport string }{{"WebSocket", "ws"}, {"Ajax", "ajax"}} {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			// Short grace periods, so that the reload outlasts them: the
			// reloaded page is a client the server has forgotten, and
			// only its position gets it what was pushed meanwhile.
			rs := startResumeServer(t, sente.Options{CloseGrace: 300 * time.Millisecond, AjaxCloseGrace: time.Second})
			defer rs.stop(t)
			res := env.runResume(t, "stream", tr.transport, rs)
			res.need(t,
				"page open on "+tr.transport,
				"every push once, in order, across the cuts",
				"a reload resumes from the stored position",
				"done",
			)
			var got struct {
				Received, Handshakes int
				Lost                 bool
			}
			res.detail(t, "every push once, in order, across the cuts", &got)
			if got.Received != streamLen || got.Lost || got.Handshakes < 2 {
				t.Errorf("stream: %+v, want %d pushes, lost false, reconnected at least once", got, streamLen)
			}
			rs.checkPositions(t)
		})
	}
}

// TestBrowserResumeLost: a server keeping 16 pushes, with a MemoryBroker
// (which keeps none), makes 200 while the page is cut off: the page is told
// it lost some (state.lost and the handshake event), gets the ones the server
// still holds, in order, and resumes normally after the next cut. On Ajax, an
// idle poll's timeout answer moves a quiet page along the log, so that 40
// pushes to others do not make its next cut lose anything.
func TestBrowserResumeLost(t *testing.T) {
	env := needBrowser(t)
	for _, tr := range []struct{ name, transport string }{{"WebSocket", "ws"}, {"Ajax", "ajax"}} {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			// A short poll timeout: an idle poll's answer moves the page along.
			// A short grace: during the long cut the server forgets the
			// page, and the outbox with it; only the log of 16 remains.
			rs := startResumeServer(t, sente.Options{Resume: lostHistory, Broker: &sente.MemoryBroker{}, PollTimeout: time.Second,
				CloseGrace: 200 * time.Millisecond, AjaxCloseGrace: 200 * time.Millisecond})
			defer rs.stop(t)
			res := env.runResume(t, "lost", tr.transport, rs)
			res.need(t,
				"page open on "+tr.transport,
				"pushes before the cut",
				"a long cut loses pushes: state.lost",
				"the next cut resumes without loss",
				"done",
			)
			if tr.transport == "ajax" {
				res.need(t, "an idle poll's timeout moves the position")
			}
			var got struct {
				Missing          int
				Lost, EventLost  bool
				Tail             []int
				HandshakesBefore int
			}
			res.detail(t, "a long cut loses pushes: state.lost", &got)
			if !got.Lost || !got.EventLost || got.Missing == 0 {
				t.Errorf("after the long cut: %+v, want lost (state and event) and pushes missing", got)
			}
			rs.checkPositions(t)
		})
	}
}

const (
	streamLen   = 300 // pushes of the stream scenario, 0..299
	lostHistory = 16  // Options.Resume of the lost scenario
)

// ---- the server, behind a proxy the test can cut ----

type resumeServer struct {
	sente  *sente.Server
	http   *http.Server
	served chan error
	events chan struct{} // closed when the server's Events are drained
	proxy  *proxy
	url    string // the proxy's: what the browser uses
	grace  time.Duration

	mu   sync.Mutex
	gets []chskGet // the requests of the channel socket, in order
}

// chskGet is one GET of the channel socket: a WebSocket handshake or a poll.
type chskGet struct {
	ws, handshake bool
	clientID, pos string
}

const resumePage = `<!doctype html>
<meta charset="utf-8">
<title>sente resume</title>
<p id="state">loading</p>
<script type="module">
import { connect } from "/chsk/client.js";
// What the page received survives reloads, as the client's position does.
const load = (k) => JSON.parse(sessionStorage.getItem(k) || "[]");
const save = (k, v) => sessionStorage.setItem(k, JSON.stringify(v));
const got = (window.got = load("test-got"));
const handshakes = (window.handshakes = load("test-handshakes"));
if (sessionStorage.getItem("test-hold")) {
  // The driver connects the reloaded page when it has made its pushes.
  sessionStorage.removeItem("test-hold");
  await new Promise((resolve) => (window.release = resolve));
}
const chsk = (window.chsk = connect("/chsk", { minBackoffMs: 100, maxBackoffMs: 1000 }));
chsk.on("test/n", (n) => {
  got.push(n);
  save("test-got", got);
});
chsk.on("chsk/handshake", ([uid, , data, first, lost]) => {
  handshakes.push({ first, lost, stateLost: chsk.state.lost, pos: chsk.position, after: got.length });
  save("test-handshakes", handshakes);
});
chsk.onState((s) => (document.getElementById("state").textContent = JSON.stringify(s)));
window.ready = true;
</script>
`

func startResumeServer(t *testing.T, opts sente.Options) *resumeServer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts.Logger = log
	rs := &resumeServer{sente: sente.NewServer(opts), served: make(chan error, 1), events: make(chan struct{})}
	rs.grace = max(orDefault(opts.CloseGrace, 2500*time.Millisecond), orDefault(opts.AjaxCloseGrace, 5*time.Second))
	go func() {
		defer close(rs.events)
		for range rs.sente.Events() {
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, resumePage)
	})
	mux.HandleFunc("/chsk", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			q := r.URL.Query()
			rs.mu.Lock()
			rs.gets = append(rs.gets, chskGet{
				ws:        r.Header.Get("Upgrade") != "",
				handshake: q.Has("handshake"),
				clientID:  q.Get("client-id"),
				pos:       q.Get("pos"),
			})
			rs.mu.Unlock()
		}
		rs.sente.ServeHTTP(w, r)
	})
	mux.Handle("/chsk/", rs.sente) // client.js
	mux.HandleFunc("/favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs.http = &http.Server{Handler: mux, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { rs.served <- rs.http.Serve(ln) }()
	rs.proxy = startProxy(t, ln.Addr().String())
	rs.url = "http://" + rs.proxy.ln.Addr().String()
	return rs
}

func (rs *resumeServer) stop(t *testing.T) {
	t.Helper()
	rs.proxy.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rs.sente.Shutdown(ctx); err != nil {
		t.Errorf("sente shutdown: %v", err)
	}
	if err := rs.http.Shutdown(ctx); err != nil {
		t.Errorf("http shutdown: %v", err)
		rs.http.Close()
	}
	if err := <-rs.served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("serve: %v", err)
	}
	<-rs.events
}

// connects counts the connections made: WebSocket handshakes and the polls
// that ask for a handshake.
func (rs *resumeServer) connects() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	n := 0
	for _, g := range rs.gets {
		if g.ws || g.handshake {
			n++
		}
	}
	return n
}

// push pushes test/n for n in [from, to), pace apart.
func (rs *resumeServer) push(t *testing.T, from, to int, pace time.Duration) {
	for n := from; n < to; n++ {
		if err := rs.sente.Broadcast("test/n", n); err != nil {
			t.Errorf("push %d: %v", n, err)
		}
		if pace > 0 {
			time.Sleep(pace)
		}
	}
}

// cutUntilReconnect resets the connections until the page has connected
// again. A cut may go unnoticed: it may hit only an idle connection between
// two Ajax polls, and Chromium silently retries a request whose reused
// keep-alive connection was reset, on a new connection (with the same URL,
// position included). Cutting again soon after hits that one.
func (rs *resumeServer) cutUntilReconnect(t *testing.T) int {
	before := rs.connects()
	cuts := 0
	for try := 0; try < 40; try++ {
		cuts += rs.proxy.cut()
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) {
			if rs.connects() > before {
				return cuts
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Errorf("the page did not reconnect after %d connections were reset", cuts)
	return cuts
}

// checkPositions checks that every request of the channel socket but a
// client's very first carried its position: every WebSocket (re)connect and
// every Ajax poll, the reloaded page's first included.
func (rs *resumeServer) checkPositions(t *testing.T) {
	t.Helper()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	seen := map[string]int{}
	polls, ws := 0, 0
	for i, g := range rs.gets {
		if g.ws {
			ws++
		} else {
			polls++
		}
		if seen[g.clientID] > 0 && g.pos == "" {
			t.Errorf("request %d (client %s, ws %v, handshake %v) carried no position, after %d requests of that client",
				i, g.clientID, g.ws, g.handshake, seen[g.clientID])
		}
		seen[g.clientID]++
	}
	if len(seen) != 1 {
		t.Errorf("client ids seen: %v, want one (kept across the reload)", seen)
	}
	t.Logf("requests of the channel socket: %d WebSocket handshakes, %d polls, all but the first with a position", ws, polls)
}

// ---- the proxy ----

// proxy forwards TCP connections to target; cut resets (RST) every
// connection it carries, and while blocked it resets new ones at once.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu      sync.Mutex
	blocked bool
	conns   map[net.Conn]net.Conn // browser side → server side
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]net.Conn{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go p.forward(c)
		}
	}()
	return p
}

// reset closes c with an RST rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func (p *proxy) forward(c net.Conn) {
	defer p.wg.Done()
	p.mu.Lock()
	blocked := p.blocked
	p.mu.Unlock()
	if blocked {
		reset(c)
		return
	}
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		reset(c)
		return
	}
	p.mu.Lock()
	if p.blocked {
		p.mu.Unlock()
		reset(c)
		reset(s)
		return
	}
	p.conns[c] = s
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(s, c); done <- struct{}{} }()
	go func() { io.Copy(c, s); done <- struct{}{} }()
	<-done
	c.Close()
	s.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// cut resets every connection and returns how many there were.
func (p *proxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns)
	for c, s := range p.conns {
		reset(c)
		reset(s)
		delete(p.conns, c)
	}
	return n
}

func (p *proxy) block(on bool) {
	p.mu.Lock()
	p.blocked = on
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.ln.Close()
	p.block(true)
	p.cut()
	p.wg.Wait()
}

// ---- the driver ----

// resumeNeed is a request of the driver: {"need": what, "from", "to"}.
type resumeNeed struct {
	Need     string `json:"need"`
	From, To int
}

// runResume runs testdata/resume.mjs in mode ("stream" or "lost") on
// transport against rs, answering its requests, and returns its steps.
func (e browserEnv) runResume(t *testing.T, mode, transport string, rs *resumeServer) results {
	t.Helper()
	return e.drive(t, mode+"/"+transport, []string{"resume.mjs", mode, transport, rs.url}, func(line []byte) (string, bool) {
		var n resumeNeed
		if json.Unmarshal(line, &n) != nil || n.Need == "" {
			return "", false
		}
		answer, err := rs.serveNeed(t, n)
		if err != nil {
			t.Errorf("driver asked %+v: %v", n, err)
			answer = "error"
		}
		t.Logf("driver asked %+v: %s", n, answer)
		return answer, true
	})
}

// serveNeed does what the driver asks and returns the line to answer.
func (rs *resumeServer) serveNeed(t *testing.T, n resumeNeed) (string, error) {
	switch n.Need {
	case "push": // pushes, the page connected
		rs.push(t, n.From, n.To, time.Millisecond)
		return "ok", nil

	case "stream": // pushes, with cuts every 50 (two of them holding the network down 150 ms)
		cuts, reset := 0, 0
		for at := n.From; at < n.To; at += 50 {
			rs.push(t, at, min(at+25, n.To), 3*time.Millisecond)
			if at+25 >= n.To {
				break
			}
			held := (at/50)%2 == 1
			if held {
				rs.proxy.block(true)
			}
			reset += rs.proxy.cut()
			cuts++
			if held {
				rs.push(t, at+25, at+40, 10*time.Millisecond)
				rs.proxy.block(false)
				rs.push(t, at+40, min(at+50, n.To), 3*time.Millisecond)
			} else {
				rs.push(t, at+25, min(at+50, n.To), 3*time.Millisecond)
			}
		}
		return fmt.Sprintf("ok %d cuts, %d connections reset", cuts, reset), nil

	case "push-after-grace": // pushes, the page gone for longer than the grace period
		time.Sleep(rs.grace + 300*time.Millisecond)
		rs.push(t, n.From, n.To, time.Millisecond)
		return "ok", nil

	case "lost": // pushes while the network is down
		rs.proxy.block(true)
		rs.proxy.cut()
		rs.push(t, n.From, n.To, 0)
		// Down until the server has forgotten the page (its grace passed).
		deadline := time.Now().Add(scenarioTimeout)
		for len(rs.sente.Clients("")) > 0 {
			if time.Now().After(deadline) {
				return "", fmt.Errorf("the server still knows the page after %v", scenarioTimeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
		rs.proxy.block(false)
		return "ok", nil

	case "push-others": // pushes to another client, none for the page
		for i := n.From; i < n.To; i++ {
			if err := rs.sente.PushClient("someone-else", "test/other", i); err != nil {
				return "", err
			}
		}
		return "ok", nil

	case "cut-push": // pushes, a cut that the page reconnects after, pushes
		mid := (n.From + n.To) / 2
		rs.push(t, n.From, mid, time.Millisecond)
		cuts := rs.cutUntilReconnect(t)
		rs.push(t, mid, n.To, time.Millisecond)
		return fmt.Sprintf("ok %d connections reset", cuts), nil
	}
	return "", fmt.Errorf("unknown request %q", n.Need)
}

// orDefault is d, or def when d is zero (sente's defaults).
func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
