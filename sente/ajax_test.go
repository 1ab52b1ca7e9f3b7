package sente_test

// End-to-end tests of the Ajax long-polling transport (PROTOCOL.md §4) with
// plain net/http requests against a sente.Server on loopback. Every wait is
// bounded (the HTTP client's timeout is waitFor); nothing sleeps to
// synchronise: the tests wait on Events and on responses.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/sente"
)

// ---- an Ajax client speaking HTTP by hand ----

// ajax is one client id on the Ajax transport.
type ajax struct {
	t       *testing.T
	base    string // http://host/chsk
	hc      *http.Client
	ID, UID string
	// Header is sent with every request (read when a request is made).
	Header http.Header
}

// ajax makes an Ajax client of ts for clientID of user uid (the "uid" query
// parameter, which startServer's UserID reads). It has a connection pool of
// its own, emptied when the test ends.
func (ts *testServer) ajax(t *testing.T, clientID, uid string) *ajax {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &ajax{
		t:      t,
		base:   ts.srv.URL + "/chsk",
		hc:     &http.Client{Transport: tr, Timeout: waitFor},
		ID:     clientID,
		UID:    uid,
		Header: http.Header{},
	}
}

// ajaxResp is an HTTP response, read whole.
type ajaxResp struct {
	Status  int
	Header  http.Header
	Body    []byte
	Elapsed time.Duration // from sending the request to the end of the body
	Err     error
}

// request makes a request: a poll (GET) or a post (POST with body). kv are
// extra query parameters.
func (a *ajax) request(method, body string, kv ...string) *http.Request {
	a.t.Helper()
	var rd io.Reader
	if method == http.MethodPost {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+"?"+query(a.ID, a.UID, kv...).Encode(), rd)
	if err != nil {
		a.t.Fatal(err)
	}
	for k, vs := range a.Header {
		req.Header[k] = slices.Clone(vs)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// send sends req and reads the response; safe in any goroutine.
func (a *ajax) send(req *http.Request) ajaxResp {
	start := time.Now()
	resp, err := a.hc.Do(req)
	if err != nil {
		return ajaxResp{Err: err, Elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return ajaxResp{Status: resp.StatusCode, Header: resp.Header, Body: b, Err: err, Elapsed: time.Since(start)}
}

func (a *ajax) async(req *http.Request) <-chan ajaxResp {
	ch := make(chan ajaxResp, 1)
	go func() { ch <- a.send(req) }()
	return ch
}

// poll sends a poll and waits for its answer.
func (a *ajax) poll(kv ...string) ajaxResp {
	a.t.Helper()
	return a.send(a.request(http.MethodGet, "", kv...))
}

// pollAsync sends a poll; its answer comes on the channel.
func (a *ajax) pollAsync(kv ...string) <-chan ajaxResp {
	a.t.Helper()
	return a.async(a.request(http.MethodGet, "", kv...))
}

// post sends one frame and waits for the answer.
func (a *ajax) post(body string) ajaxResp {
	a.t.Helper()
	return a.send(a.request(http.MethodPost, body))
}

func (a *ajax) postAsync(body string) <-chan ajaxResp {
	a.t.Helper()
	return a.async(a.request(http.MethodPost, body))
}

// handshake polls, expecting the handshake at once, and returns its data.
func (a *ajax) handshake(kv ...string) json.RawMessage {
	a.t.Helper()
	return wantHandshake(a.t, a.poll(kv...), a.UID)
}

// held sends two polls at once and returns the one the server holds: the
// poll attached first is superseded by the other and answered
// ["chsk/timeout", null] at once, and when that answer is back the other is
// certainly the client's current poll, ready to be answered by a push, a
// kick or a shutdown (no sleep guessing when a poll has arrived). The client
// must be known to the server and have nothing queued.
func (a *ajax) held() <-chan ajaxResp {
	a.t.Helper()
	p1, p2 := a.pollAsync(), a.pollAsync()
	r, rest := recvResp(a.t, p1, p2)
	wantMarker(a.t, r, "chsk/timeout")
	return rest
}

// recvResp waits for the first answer of p1 and p2 and returns it and the
// channel of the other.
func recvResp(t *testing.T, p1, p2 <-chan ajaxResp) (ajaxResp, <-chan ajaxResp) {
	t.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	select {
	case r := <-p1:
		return r, p2
	case r := <-p2:
		return r, p1
	case <-timer.C:
		t.Fatalf("no answer within %v", waitFor)
	}
	panic("unreachable")
}

// await waits for an answer.
func await(t *testing.T, p <-chan ajaxResp) ajaxResp {
	t.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	select {
	case r := <-p:
		return r
	case <-timer.C:
		t.Fatalf("no answer within %v", waitFor)
	}
	panic("unreachable")
}

// frame checks that r is a 200 answer carrying one JSON frame, not to be
// cached, and decodes it.
func (r ajaxResp) frame(t *testing.T) frame {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("request failed: %v", r.Err)
	}
	if r.Status != http.StatusOK {
		t.Fatalf("status %d (%q), want 200", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	return decodeFrame(t, r.Body)
}

// status checks that the request was refused with want.
func (r ajaxResp) status(t *testing.T, want int, what string) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("%s: %v", what, r.Err)
	}
	if r.Status != want {
		t.Errorf("%s: status %d (%q), want %d", what, r.Status, r.Body, want)
	}
}

// isMarker reports whether f is [marker, null].
func isMarker(f frame, marker string) bool {
	return f.CB == nil && string(f.Payload) == strconv.Quote(marker)
}

// wantMarker checks that r is [marker, null], such as ["chsk/timeout", null].
func wantMarker(t *testing.T, r ajaxResp, marker string) {
	t.Helper()
	if f := r.frame(t); !isMarker(f, marker) {
		t.Fatalf("answer %s, want [%q, null]", f.Raw, marker)
	}
}

// wantHandshake checks that r is [["chsk/handshake", [uid, null, data]], null]
// and returns data.
func wantHandshake(t *testing.T, r ajaxResp, uid string) json.RawMessage {
	t.Helper()
	f := r.frame(t)
	var ev, args []json.RawMessage
	if f.CB != nil || json.Unmarshal(f.Payload, &ev) != nil || len(ev) != 2 || string(ev[0]) != `"chsk/handshake"` ||
		json.Unmarshal(ev[1], &args) != nil || len(args) != 5 || string(args[1]) != "null" {
		t.Fatalf("answer %s, want the handshake [[\"chsk/handshake\", [uid, null, data]], null]", f.Raw)
	}
	var got string
	if err := json.Unmarshal(args[0], &got); err != nil || got != uid {
		t.Fatalf("handshake %s, want uid %q", f.Raw, uid)
	}
	return args[2]
}

// wantClose checks that r is [["chsk/close", [code, reason]], null].
func wantClose(t *testing.T, r ajaxResp, code wsasync.StatusCode, reason string) {
	t.Helper()
	f := r.frame(t)
	want := fmt.Sprintf(`[["chsk/close",[%d,%q]],null]`, code, reason)
	var ev []json.RawMessage
	var args []any
	if f.CB != nil || json.Unmarshal(f.Payload, &ev) != nil || len(ev) != 2 || string(ev[0]) != `"chsk/close"` ||
		json.Unmarshal(ev[1], &args) != nil || len(args) != 2 || args[0] != float64(code) || args[1] != reason {
		t.Fatalf("answer %s, want %s", f.Raw, want)
	}
}

// ---- handshake and polls ----

func TestAjaxHandshake(t *testing.T) {
	t.Parallel()
	const pollTimeout = time.Second
	ts := startServer(t, sente.Options{
		PollTimeout:    pollTimeout,
		AjaxCloseGrace: 2 * time.Second,
		HandshakeData:  func(r *http.Request) any { return map[string]string{"via": r.Method} },
	})
	events := ts.Events()
	a := ts.ajax(t, "t1", "alice")
	a.Header.Set("X-Test", "yes")

	// The first poll is answered with the handshake at once.
	r := a.poll()
	if data := wantHandshake(t, r, "alice"); string(data) != `{"via":"GET"}` {
		t.Errorf("handshake data %s, want {\"via\":\"GET\"}", data)
	}
	if r.Elapsed >= pollTimeout {
		t.Errorf("first poll answered after %v: held, not answered at once", r.Elapsed)
	}
	evs := expectEvents(t, events, "chsk/client-connect alice t1", "chsk/uidport-open alice ")
	if req := evs[0].Request; req == nil || req.Method != http.MethodGet || req.Header.Get("X-Test") != "yes" {
		t.Errorf("client-connect Request %v, want the first poll", req)
	}

	// A known client's poll is held, and answered ["chsk/timeout", null]
	// after the poll timeout.
	r = a.poll()
	wantMarker(t, r, "chsk/timeout")
	if r.Elapsed < pollTimeout {
		t.Errorf("poll answered with the timeout after %v, before the poll timeout %v", r.Elapsed, pollTimeout)
	}

	// handshake=1 asks for it again, at once.
	r = a.poll("handshake", "1")
	wantHandshake(t, r, "alice")
	if r.Elapsed >= pollTimeout {
		t.Errorf("poll with handshake=1 answered after %v", r.Elapsed)
	}

	// The user id changed (a login): the server does not know this client
	// under it, and says so with a handshake.
	a.UID = "bob"
	r = a.poll()
	wantHandshake(t, r, "bob")
	if r.Elapsed >= pollTimeout {
		t.Errorf("poll after the uid changed answered after %v", r.Elapsed)
	}
	expectEvents(t, events,
		"chsk/client-disconnect alice t1", "chsk/uidport-close alice ",
		"chsk/client-connect bob t1", "chsk/uidport-open bob ")

	// Another path than GET and POST.
	r = a.send(a.request(http.MethodPut, ""))
	r.status(t, http.StatusMethodNotAllowed, "PUT")
	if rest := ts.drainEvents(t); len(rest) != 0 {
		t.Errorf("unexpected events %q", rest)
	}
}

// ---- pushes ----

func TestAjaxPush(t *testing.T) {
	t.Parallel()
	const window = 300 * time.Millisecond
	ts := startServer(t, sente.Options{PollTimeout: 3 * time.Second, AjaxSendWindow: window, AjaxCloseGrace: 2 * time.Second})
	a := ts.ajax(t, "p1", "alice")
	a.handshake()

	// A held poll is answered by pushes, those of one window in one frame.
	p := a.held()
	start := time.Now()
	ts.Push("alice", "t/a", 1)
	ts.Push("alice", "t/b", 2)
	f := await(t, p).frame(t)
	if elapsed := time.Since(start); elapsed < window {
		t.Errorf("batch answered after %v, before the %v window ended", elapsed, window)
	}
	if got := summary(f.events(t)); got != "t/a=1 t/b=2" {
		t.Errorf("poll answered %s, want both pushes in one batch", f.Raw)
	}

	// PushNow sends what waits, with itself, without waiting for the window.
	p = a.held()
	ts.Push("alice", "t/c", 3)
	ts.PushNow("alice", "t/d", 4)
	if got := summary(await(t, p).frame(t).events(t)); got != "t/c=3 t/d=4" {
		t.Errorf("PushNow answered %q, want t/c=3 t/d=4", got)
	}

	// What is pushed between two polls waits for the next one.
	ts.PushNow("alice", "t/e", 5)
	if got := summary(a.poll().frame(t).events(t)); got != "t/e=5" {
		t.Errorf("next poll answered %q, want t/e=5", got)
	}
}

// ---- posts ----

func TestAjaxPost(t *testing.T) {
	t.Parallel()
	const pollTimeout = 300 * time.Millisecond
	ts := startServer(t, sente.Options{PollTimeout: pollTimeout})
	events := ts.Events()
	a := ts.ajax(t, "c1", "alice")
	a.Header.Set("X-Test", "yes")

	// Without cb: acknowledged at once; the event reaches Events.
	wantMarker(t, a.post(`[["chat/msg",{"x":1}],null]`), "chsk/dummy-cb-200")
	ev := expectEvents(t, events, "chat/msg alice c1")[0]
	if string(ev.Data) != `{"x":1}` {
		t.Errorf("Data %s, want {\"x\":1}", ev.Data)
	}
	if r := ev.Request; r == nil || r.Method != http.MethodPost || r.Header.Get("X-Test") != "yes" || r.URL.Query().Get("client-id") != "c1" {
		t.Errorf("Request %v, want the POST", r)
	}
	if ev.WantsReply() {
		t.Error("WantsReply for an event without cb")
	}

	// With cb: the answer is the reply.
	p := a.postAsync(`[["chat/ask",[1,2]],"cb-1"]`)
	ev = expectEvents(t, events, "chat/ask alice c1")[0]
	if !ev.WantsReply() {
		t.Fatal("WantsReply false for an event with cb")
	}
	if err := ev.Reply(map[string]bool{"ok": true}); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	if err := ev.Reply("again"); !errors.Is(err, sente.ErrReplied) {
		t.Errorf("second Reply: %v, want ErrReplied", err)
	}
	f := await(t, p).frame(t)
	if f.CB == nil || *f.CB != "cb-1" || string(f.Payload) != `{"ok":true}` {
		t.Errorf("answer %s, want [{\"ok\":true},\"cb-1\"]", f.Raw)
	}

	// Nobody replies: ["chsk/timeout", null] after the poll timeout.
	p = a.postAsync(`[["chat/ask",null],"cb-2"]`)
	expectEvents(t, events, "chat/ask alice c1")
	r := await(t, p)
	wantMarker(t, r, "chsk/timeout")
	if r.Elapsed < pollTimeout {
		t.Errorf("timeout answered after %v, before the poll timeout %v", r.Elapsed, pollTimeout)
	}

	// Protocol events never reach the application.
	wantMarker(t, a.post(`[["chsk/ws-pong"],null]`), "chsk/dummy-cb-200")
	wantMarker(t, a.post(`[["chat/sentinel"],null]`), "chsk/dummy-cb-200")
	expectEvents(t, events, "chat/sentinel alice c1")
	// A post is no connection: no presence events.
	if rest := ts.drainEvents(t); len(rest) != 0 {
		t.Errorf("unexpected events %q", rest)
	}
}

// TestAjaxPostPing: chsk/ws-ping with a cb over POST is answered ["pong", cb]
// (PROTOCOL.md §2), as over WebSocket.
func TestAjaxPostPing(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{PollTimeout: 300 * time.Millisecond})
	a := ts.ajax(t, "c1", "alice")
	f := a.post(`[["chsk/ws-ping"],"p-1"]`).frame(t)
	if f.CB == nil || *f.CB != "p-1" || string(f.Payload) != `"pong"` {
		t.Errorf("ping over POST answered %s, want [\"pong\",\"p-1\"]", f.Raw)
	}
	// Without cb there is nothing to answer but the acknowledgement.
	wantMarker(t, a.post(`[["chsk/ws-ping"],null]`), "chsk/dummy-cb-200")
}

// TestAjaxLateReply: a reply made after its POST was answered with the
// timeout reaches nobody, and Reply must say so rather than succeed.
func TestAjaxLateReply(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{PollTimeout: 200 * time.Millisecond})
	events := ts.Events()
	a := ts.ajax(t, "c1", "alice")
	p := a.postAsync(`[["chat/ask",null],"cb-1"]`)
	ev := expectEvents(t, events, "chat/ask alice c1")[0]
	wantMarker(t, await(t, p), "chsk/timeout")
	if err := ev.Reply("too late"); err == nil {
		t.Error("Reply after the POST was answered with chsk/timeout returned nil: the reply is lost silently, want ErrGone")
	}
}

func TestAjaxPostRouter(t *testing.T) {
	t.Parallel()
	const pollTimeout = 300 * time.Millisecond
	ts := startServer(t, sente.Options{PollTimeout: pollTimeout})
	r := sente.Router{Logger: ts.Log}
	r.Handle("t/echo", func(_ context.Context, ev *sente.Event) { ev.Reply(ev.Data) })
	r.Handle("t/silent", func(context.Context, *sente.Event) {})
	routed := make(chan struct{})
	go func() { r.Run(context.Background(), ts.Events()); close(routed) }()
	a := ts.ajax(t, "c1", "alice")

	f := a.post(`[["t/echo",{"n":1}],"e1"]`).frame(t)
	if f.CB == nil || *f.CB != "e1" || string(f.Payload) != `{"n":1}` {
		t.Errorf("echo answered %s, want [{\"n\":1},\"e1\"]", f.Raw)
	}
	res := a.post(`[["t/silent",1],"s1"]`)
	wantMarker(t, res, "chsk/timeout")
	if res.Elapsed < pollTimeout {
		t.Errorf("timeout answered after %v, before the poll timeout %v", res.Elapsed, pollTimeout)
	}
	f = a.post(`[["t/echo","still here"],"e2"]`).frame(t)
	if f.CB == nil || *f.CB != "e2" || string(f.Payload) != `"still here"` {
		t.Errorf("echo answered %s, want [\"still here\",\"e2\"]", f.Raw)
	}
	shutdown(t, ts)
	within(t, "Router.Run returns once Events is closed", routed)
}

func TestAjaxPostLimit(t *testing.T) {
	t.Parallel()
	opts := sente.Options{PollTimeout: 300 * time.Millisecond}
	opts.WebSocket.ReadLimit = 256
	ts := startServer(t, opts)
	events := ts.Events()
	a := ts.ajax(t, "c1", "alice")
	big := `[["t/big",` + string(bigString(300)) + `],null]`
	a.post(big).status(t, http.StatusRequestEntityTooLarge, "post over the read limit")
	ok := `[["t/ok",` + string(bigString(256-len(`[["t/ok",],null]`)-2)) + `],null]`
	if len(ok) != 256 {
		t.Fatalf("test frame of %d bytes, want 256", len(ok))
	}
	wantMarker(t, a.post(ok), "chsk/dummy-cb-200")
	expectEvents(t, events, "t/ok alice c1") // and not t/big

	// A negative read limit means no limit (wsasync.Options), not a limit
	// of zero.
	opts.WebSocket.ReadLimit = -1
	ts = startServer(t, opts)
	a = ts.ajax(t, "c1", "alice")
	r := a.post(`[["t/x",1],null]`)
	if r.Status != http.StatusOK {
		t.Fatalf("post of 16 bytes with ReadLimit -1 (no limit): status %d, want 200", r.Status)
	}
	wantMarker(t, r, "chsk/dummy-cb-200")
}

func TestAjaxBadPackages(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{PollTimeout: 300 * time.Millisecond})
	events := ts.Events()
	a := ts.ajax(t, "c1", "alice")
	for _, tc := range []struct{ body, id string }{
		{``, sente.EventBadPackage},
		{`garbage`, sente.EventBadPackage},
		{`{"a":1}`, sente.EventBadPackage},
		{`[]`, sente.EventBadPackage},
		{`[["t/x",1]]`, sente.EventBadPackage},
		{`[["t/x",1],5]`, sente.EventBadPackage},
		{`[["t/x",1],"` + strings.Repeat("c", 33) + `"]`, sente.EventBadPackage},
		{`["t/x",null]`, sente.EventBadEvent},
		{`[[],null]`, sente.EventBadEvent},
		{`[["bad"],null]`, sente.EventBadEvent},
		{`[["chsk/handshake"],null]`, sente.EventBadEvent},
		{`[["chsk/anything",1],"cb"]`, sente.EventBadEvent},
	} {
		// Acknowledged, never refused: the client goes on.
		wantMarker(t, a.post(tc.body), "chsk/dummy-cb-200")
		ev := nextEvent(t, events)
		if ev.ID != tc.id || ev.UserID != "alice" || ev.ClientID != "c1" || ev.Request == nil || ev.Request.Method != http.MethodPost {
			t.Errorf("%q: got %q (Request %v), want %s from the POST", tc.body, describe(ev), ev.Request != nil, tc.id)
			continue
		}
		var raw string
		// The whole body for a bad package, the payload for a bad event.
		if err := ev.Decode(&raw); err != nil || !strings.Contains(tc.body, raw) || (raw == "" && tc.body != "") {
			t.Errorf("%q: %s data %s, want the body or its payload as a string", tc.body, ev.ID, ev.Data)
		}
		if ev.WantsReply() {
			t.Errorf("%q: %s wants a reply", tc.body, ev.ID)
		}
	}
	logs := ts.Logs.String()
	if !strings.Contains(logs, sente.EventBadPackage) || !strings.Contains(logs, sente.EventBadEvent) {
		t.Errorf("bad packages and events not logged:\n%s", logs)
	}
}

// ---- security ----

// TestAjaxSecurity: every poll and every post passes the checks of a
// WebSocket handshake, not only the first poll.
func TestAjaxSecurity(t *testing.T) {
	t.Parallel()
	const token = "tok_Abc-123"
	var revoked atomic.Bool
	ts := startServer(t, sente.Options{
		PollTimeout:    300 * time.Millisecond,
		AjaxCloseGrace: 2 * time.Second,
		CSRFToken:      func(*http.Request) string { return token },
		Origins:        []string{"*.example.com"},
		Authorize: func(*http.Request) error {
			if revoked.Load() {
				return errors.New("revoked-secret")
			}
			return nil
		},
	})
	events := ts.Events()
	a := ts.ajax(t, "s1", "alice")
	a.Header.Set("X-CSRF-Token", token)
	a.handshake()
	expectEvents(t, events, "chsk/client-connect alice s1", "chsk/uidport-open alice ")
	wantMarker(t, a.post(`[["t/ok",1],null]`), "chsk/dummy-cb-200")
	expectEvents(t, events, "t/ok alice s1")

	// refused checks that a poll and a post with header h (instead of a's)
	// are refused with status, without telling why.
	refused := func(h http.Header, status int, what string, kv ...string) {
		t.Helper()
		saved := a.Header
		a.Header = h
		defer func() { a.Header = saved }()
		for _, r := range []ajaxResp{
			a.poll(kv...),
			a.send(a.request(http.MethodPost, `[["t/refused",1],null]`, kv...)),
		} {
			r.status(t, status, what)
			for _, reason := range []string{"CSRF", "evil", "revoked-secret"} {
				if strings.Contains(string(r.Body), reason) {
					t.Errorf("%s: the refusal tells its reason: %q", what, r.Body)
				}
			}
		}
	}

	// CSRF: the token in the X-CSRF-Token header, on every request.
	refused(http.Header{}, http.StatusForbidden, "no token")
	refused(http.Header{"X-Csrf-Token": {"wrong"}}, http.StatusForbidden, "wrong token")
	refused(http.Header{}, http.StatusForbidden, "token in the URL", "csrf-token", token, "X-CSRF-Token", token)

	// Origin: another site's page is refused; the own host and the
	// allowed ones are not.
	evil := a.Header.Clone()
	evil.Set("Origin", "https://evil.test")
	refused(evil, http.StatusForbidden, "foreign origin")
	for _, origin := range []string{ts.srv.URL, "https://app.example.com"} {
		saved := a.Header
		a.Header = a.Header.Clone()
		a.Header.Set("Origin", origin)
		wantMarker(t, a.post(`[["t/origin",1],null]`), "chsk/dummy-cb-200")
		a.Header = saved
		expectEvents(t, events, "t/origin alice s1")
	}

	// Authorize: revoked between two requests.
	revoked.Store(true)
	refused(a.Header, http.StatusUnauthorized, "not authorized")
	revoked.Store(false)

	// The refused requests reached nobody (no event, no disconnect: the
	// client is still known, its poll is held); the log tells why.
	wantMarker(t, a.post(`[["t/sentinel"],null]`), "chsk/dummy-cb-200")
	expectEvents(t, events, "t/sentinel alice s1")
	wantMarker(t, a.poll(), "chsk/timeout")
	logs := ts.Logs.String()
	for _, reason := range []string{"bad CSRF token", "evil.test", "revoked-secret"} {
		if !strings.Contains(logs, reason) {
			t.Errorf("log does not hold the reason %q", reason)
		}
	}
}

// ---- presence ----

func TestAjaxPresence(t *testing.T) {
	t.Parallel()
	const (
		pollTimeout = 200 * time.Millisecond
		grace       = 500 * time.Millisecond
	)
	ts := startServer(t, sente.Options{PollTimeout: pollTimeout, AjaxCloseGrace: grace})
	events := ts.Events()
	a := ts.ajax(t, "c1", "alice")
	a.handshake()
	evs := expectEvents(t, events, "chsk/client-connect alice c1", "chsk/uidport-open alice ")
	if evs[0].Request == nil || evs[0].Request.Method != http.MethodGet {
		t.Errorf("client-connect Request %v, want the first poll", evs[0].Request)
	}

	// Polls spanning more than the grace: the client stays connected, as
	// the gaps between them are shorter.
	var last time.Time
	for range 4 {
		last = time.Now()
		wantMarker(t, a.poll(), "chsk/timeout")
	}
	if users, _ := ts.ConnectedUsers(t.Context()); !slices.Equal(users, []string{"alice"}) {
		t.Errorf("ConnectedUsers %q while polling, want [alice]", users)
	}
	wantMarker(t, a.post(`[["t/sentinel"],null]`), "chsk/dummy-cb-200")
	expectEvents(t, events, "t/sentinel alice c1") // no disconnect before it

	// Polling stops: the client is gone once the grace has passed after the
	// last poll ended, once.
	expectEvents(t, events, "chsk/client-disconnect alice c1", "chsk/uidport-close alice ")
	if elapsed := time.Since(last); elapsed < pollTimeout+grace {
		t.Errorf("disconnect %v after the last poll was sent, before its timeout and the grace (%v)", elapsed, pollTimeout+grace)
	}
	if users, _ := ts.ConnectedUsers(t.Context()); len(users) != 0 {
		t.Errorf("ConnectedUsers %q after the grace", users)
	}
	if rest := ts.drainEvents(t); len(rest) != 0 {
		t.Errorf("unexpected events %q", rest)
	}
}

// ---- supersession, kick, shutdown ----

// TestAjaxSuperseded: a second poll of the same client id ends the first
// with ["chsk/timeout", null] at once, quietly: no close, no disconnect.
func TestAjaxSuperseded(t *testing.T) {
	t.Parallel()
	const pollTimeout = 3 * time.Second
	ts := startServer(t, sente.Options{PollTimeout: pollTimeout, AjaxCloseGrace: 2 * time.Second})
	events := ts.Events()
	a := ts.ajax(t, "c1", "alice")
	a.handshake()
	expectEvents(t, events, "chsk/client-connect alice c1", "chsk/uidport-open alice ")

	r, rest := recvResp(t, a.pollAsync(), a.pollAsync())
	wantMarker(t, r, "chsk/timeout")
	if r.Elapsed >= pollTimeout {
		t.Errorf("superseded poll answered after %v: at its own timeout, not at once", r.Elapsed)
	}
	// The other goes on.
	ts.PushNow("alice", "t/x", 1)
	if got := summary(await(t, rest).frame(t).events(t)); got != "t/x=1" {
		t.Errorf("remaining poll answered %q, want t/x=1", got)
	}
	wantMarker(t, a.post(`[["t/sentinel"],null]`), "chsk/dummy-cb-200")
	expectEvents(t, events, "t/sentinel alice c1")
	if strings.Contains(ts.Logs.String(), "refused") {
		t.Errorf("supersession logged a refusal:\n%s", ts.Logs.String())
	}
}

func TestAjaxKick(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{PollTimeout: 3 * time.Second, AjaxCloseGrace: 2 * time.Second})
	a := ts.ajax(t, "c1", "alice")
	a.handshake()
	p := a.held()
	ts.Kick("alice", "bye")
	wantClose(t, await(t, p), sente.CodeKicked, "bye")

	b := ts.ajax(t, "c2", "bob")
	b.handshake()
	p = b.held()
	ts.KickClient("c2", "by id")
	wantClose(t, await(t, p), sente.CodeKicked, "by id")
}

// TestAjaxKickBetweenPolls: an Ajax client spends part of its life between
// two polls; a Kick then must not be lost. The next poll must be answered
// with the close, as a held poll would have been.
func TestAjaxKickBetweenPolls(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{PollTimeout: 300 * time.Millisecond, AjaxCloseGrace: 2 * time.Second})
	a := ts.ajax(t, "c1", "alice")
	a.handshake() // answered: the client is between polls
	ts.Kick("alice", "bye")
	r := a.poll()
	if f := r.frame(t); isMarker(f, "chsk/timeout") {
		t.Fatalf("Kick between two polls was lost: the next poll was held and answered %s, want the close 4000", f.Raw)
	}
	wantClose(t, r, sente.CodeKicked, "bye")
}

func TestAjaxShutdown(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{PollTimeout: 3 * time.Second, AjaxCloseGrace: 2 * time.Second})
	events := ts.Events()
	a := ts.ajax(t, "c1", "alice")
	a.handshake()
	expectEvents(t, events, "chsk/client-connect alice c1", "chsk/uidport-open alice ")
	p := a.held()
	// A post waiting for its reply is answered too.
	pp := a.postAsync(`[["t/ask"],"q1"]`)
	expectEvents(t, events, "t/ask alice c1")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		done <- ts.Shutdown(ctx)
	}()
	wantClose(t, await(t, p), sente.CodeRestart, "server shutting down")
	wantMarker(t, await(t, pp), "chsk/timeout")
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Shutdown did not return")
	}
	a.poll().status(t, http.StatusServiceUnavailable, "poll after Shutdown")
	a.post(`[["t/x"],null]`).status(t, http.StatusServiceUnavailable, "post after Shutdown")
}

// ---- mixing transports ----

// TestAjaxMixedTransports: a client that downgrades from WebSocket to Ajax
// and comes back, with the same client id, gets every push and reply exactly
// once, in order.
func TestAjaxMixedTransports(t *testing.T) {
	t.Parallel()
	ts := startServer(t, sente.Options{
		PollTimeout:    3 * time.Second,
		AjaxSendWindow: 50 * time.Millisecond,
		CloseGrace:     2 * time.Second,
		AjaxCloseGrace: 2 * time.Second,
	})
	events := ts.Events()
	var got []string
	record := func(f frame) {
		t.Helper()
		if f.CB != nil {
			got = append(got, "reply:"+string(f.Payload)+"@"+*f.CB)
			return
		}
		for _, e := range f.events(t) {
			got = append(got, string(e.Data))
		}
	}
	n := 0
	push := func(k int) {
		t.Helper()
		for range k {
			if err := ts.Push("alice", "t/n", n); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}

	ws := ts.dial(t, "m1", "alice")
	ws.event("t/ask", nil, "q1")
	ask, _ := awaitEvent(t, events, "t/ask", "m1")
	push(3)
	for len(got) < 3 {
		record(ws.next())
	}

	// Downgrade: the poll takes over the client (its WebSocket is
	// replaced), and what is pushed or replied goes to the polls.
	a := ts.ajax(t, "m1", "alice")
	p := a.pollAsync()
	if code := ws.closeCode(); code != sente.CodeReplaced {
		t.Fatalf("WebSocket closed with %v when a poll of its client id came, want 4002", code)
	}
	push(2)
	if err := ask.Reply("r1"); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	record(await(t, p).frame(t))
	push(1)
	for polls := 0; len(got) < 7; polls++ {
		if polls == 10 {
			t.Fatalf("after %d polls: %q", polls, got)
		}
		if f := a.poll().frame(t); !isMarker(f, "chsk/timeout") {
			record(f)
		}
	}
	push(1) // between polls
	record(a.poll().frame(t))

	// Upgrade back.
	ws2 := ts.dial(t, "m1", "alice")
	push(2)
	for len(got) < 10 {
		record(ws2.next())
	}
	ws2.ping("end") // nothing else was sent
	want := []string{"0", "1", "2", "3", "4", `reply:"r1"@q1`, "5", "6", "7", "8"}
	if !slices.Equal(got, want) {
		t.Errorf("received %q, want %q", got, want)
	}
	for _, ev := range ts.drainEvents(t) {
		if strings.HasPrefix(ev, sente.EventClientGone) {
			t.Errorf("the client disconnected while switching transports: %q", ev)
		}
	}
}

// TestAjaxPollOrderUnderPushes: a poll answers with one frame and leaves the
// others it took (a batch after a reply queued for the client's WebSocket)
// for the next poll; pushes made meanwhile must not overtake them.
func TestAjaxPollOrderUnderPushes(t *testing.T) {
	t.Parallel()
	const (
		asks   = 200
		pushes = 4 * asks
	)
	ts := startServer(t, sente.Options{
		PollTimeout:    3 * time.Second,
		AjaxSendWindow: time.Millisecond,
		CloseGrace:     2 * time.Second,
		AjaxCloseGrace: 2 * time.Second,
		SendQueue:      4 * pushes,
	})
	events := ts.Events()
	// Requests made over WebSocket, replied to once the client polls.
	ws := ts.dial(t, "m1", "alice")
	for i := range asks {
		ws.event("t/ask", nil, "q"+strconv.Itoa(i))
	}
	var evs []*sente.Event
	for len(evs) < asks {
		ev, _ := awaitEvent(t, events, "t/ask", "m1")
		evs = append(evs, ev)
	}
	a := ts.ajax(t, "m1", "alice")
	p := a.pollAsync()
	if code := ws.closeCode(); code != sente.CodeReplaced {
		t.Fatalf("WebSocket closed with %v, want 4002", code)
	}

	// Pushes and replies, numbered in the order they are made, while the
	// client polls.
	pushed := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < pushes && err == nil; i++ {
			if i%4 == 3 {
				err = evs[i/4].Reply(i)
			} else {
				err = ts.Push("alice", "t/n", i)
			}
		}
		pushed <- err
	}()
	var got []int
	add := func(f frame) {
		t.Helper()
		var vals []json.RawMessage
		if f.CB != nil {
			vals = append(vals, f.Payload)
		} else if !isMarker(f, "chsk/timeout") {
			for _, e := range f.events(t) {
				vals = append(vals, e.Data)
			}
		}
		for _, v := range vals {
			i, err := strconv.Atoi(string(v))
			if err != nil {
				t.Fatalf("value %s", v)
			}
			got = append(got, i)
		}
	}
	add(await(t, p).frame(t))
	deadline := time.Now().Add(waitFor)
	for len(got) < pushes {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d values after %v", len(got), pushes, waitFor)
		}
		add(a.poll().frame(t))
	}
	if err := <-pushed; err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("value %d arrived at position %d: out of order (%v)", v, i, got[max(i-5, 0):min(i+5, len(got))])
		}
	}
}
