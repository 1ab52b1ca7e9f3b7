package via_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/via"
)

// wire is an envelope as a raw peer sees it.
type wire struct {
	V      int               `json:"v"`
	Type   string            `json:"type"`
	ID     string            `json:"id,omitempty"`
	RID    string            `json:"rid,omitempty"`
	Status int               `json:"status,omitempty"`
	Key    string            `json:"key,omitempty"`
	SN     uint64            `json:"sn,omitempty"`
	Body   json.RawMessage   `json:"body,omitempty"`
	Hdrs   map[string]string `json:"headers,omitempty"`
}

// rawDial opens a raw via.v1 connection to url, closed at the end of the
// test.
func rawDial(t *testing.T, url string) *wsasync.Conn {
	t.Helper()
	d := wsasync.Dialer{Subprotocols: []string{via.Subprotocol}}
	c, err := d.Dial(tctx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(c.Out)
		for range c.In {
		}
		<-c.Done
	})
	return c
}

func sendWire(t *testing.T, out chan<- wsasync.Message, w wire) {
	t.Helper()
	w.V = 1
	b, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case out <- wsasync.Text(string(b)):
	case <-time.After(wait):
		t.Fatal("cannot send")
	}
}

func recvWire(t *testing.T, in <-chan wsasync.Message) wire {
	t.Helper()
	m, ok := <-recvOK(t, in)
	if !ok {
		t.Fatal("connection closed")
	}
	var w wire
	if err := json.Unmarshal(m.Data, &w); err != nil {
		t.Fatalf("%s: %v", m.Data, err)
	}
	return w
}

// recvOK wraps a bounded receive that also reports a closed channel.
func recvOK(t *testing.T, in <-chan wsasync.Message) <-chan wsasync.Message {
	t.Helper()
	ch := make(chan wsasync.Message, 1)
	select {
	case m, ok := <-in:
		if ok {
			ch <- m
		}
		close(ch)
	case <-time.After(wait):
		t.Fatalf("nothing received within %v", wait)
	}
	return ch
}

// waitFor reads w until a value satisfies ok.
func waitFor[T any](t *testing.T, ch <-chan T, ok func(T) bool) T {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	var last T
	for {
		select {
		case v, open := <-ch:
			if !open {
				t.Fatalf("watch closed; last value %v", last)
			}
			last = v
			if ok(v) {
				return v
			}
		case <-deadline.C:
			t.Fatalf("no matching value within %v; last %#v", wait, last)
		}
	}
}

func eq[T any](want T) func(T) bool {
	return func(v T) bool { return reflect.DeepEqual(v, want) }
}

// A subscriber gets the default, then the published value and its changes;
// the publisher's Value and the Remote agree.
func TestSubscribe(t *testing.T) {
	counter := via.NewValue(41)
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	b.Publish("t/counter", via.Shared(counter))
	a := newEndpoint(t, via.Options{})
	ra := record(a)
	bID, aID := pair(t, a, b, serve(t, b))
	ctx := tctx(t)

	r, err := via.Subscribe(ctx, a.Peer(bID), "t/counter", nil, -1)
	if err != nil {
		t.Fatal(err)
	}
	w := r.Watch(ctx)
	waitFor(t, w, eq(41))
	counter.Update(func(n int) int { return n + 1 })
	waitFor(t, w, eq(42))
	if r.Get() != 42 || r.ID() != "t/counter" || r.Peer() != a.Peer(bID) || r.Err() != nil {
		t.Fatalf("remote: %v %q %v", r.Get(), r.ID(), r.Err())
	}
	if ev := ra.first(t, kindPeer(via.Subscribed, bID)); ev.Key != r.Key() || ev.ID != "t/counter" {
		t.Fatalf("subscribed event: %+v", ev)
	}
	subs := b.Subscriptions()
	if len(subs) != 1 || !subs[0].Inbound || subs[0].PeerID != aID || subs[0].Key != r.Key() || subs[0].SN != 2 {
		t.Fatalf("publisher's table: %+v", subs)
	}
	subs = a.Subscriptions()
	if len(subs) != 1 || subs[0].Inbound || subs[0].PeerID != bID || subs[0].SN != 2 {
		t.Fatalf("subscriber's table: %+v", subs)
	}
}

// The first push is the whole value; later pushes are merge patches when
// both values are objects (and a patch can say it), whole values otherwise.
func TestPushesPatchesOrValues(t *testing.T) {
	const keep = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkk" // makes patches smaller than values
	v := via.NewValue[any](map[string]any{"a": 1, "b": "x", "k": keep})
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	b.Publish("t/v", via.Shared(v))
	c := rawDial(t, serve(t, b))

	sendWire(t, c.Out, wire{Type: "sub", RID: "1", Key: "k", ID: "t/v", Body: json.RawMessage(`{"some":"args"}`)})
	if w := recvWire(t, c.In); w.Type != "reply" || w.RID != "1" || w.Status != 200 {
		t.Fatalf("reply: %+v", w)
	}
	type obj = map[string]any
	steps := []struct {
		set  any
		typ  string
		body string
	}{
		{nil, "value", `{"a":1,"b":"x","k":"` + keep + `"}`},
		{obj{"a": 2, "b": "x", "k": keep}, "patch", `{"a":2}`},
		{obj{"a": 2, "c": []int{1}, "k": keep}, "patch", `{"b":null,"c":[1]}`},
		{obj{"a": 2, "c": obj{"d": 1}, "k": keep}, "patch", `{"c":{"d":1}}`},
		{obj{"a": 2, "c": obj{"e": true}, "k": keep}, "patch", `{"c":{"d":null,"e":true}}`},
		{[]int{1, 2}, "value", `[1,2]`},
		{obj{"a": 1, "k": keep}, "value", `{"a":1,"k":"` + keep + `"}`},                    // from a non-object
		{obj{"a": 1, "n": nil, "k": keep}, "value", `{"a":1,"k":"` + keep + `","n":null}`}, // a null member
		{obj{"a": 1, "n": 2, "k": keep}, "patch", `{"n":2}`},
		{obj{"z": "zzzz"}, "value", `{"z":"zzzz"}`}, // the patch would not be smaller
		{"text", "value", `"text"`},
	}
	for i, s := range steps {
		if s.set != nil {
			v.Set(s.set)
		}
		w := recvWire(t, c.In)
		if w.Type != s.typ || w.Key != "k" || w.SN != uint64(i+1) || string(w.Body) != s.body {
			t.Fatalf("step %d: got %s sn %d %s, want %s sn %d %s", i, w.Type, w.SN, w.Body, s.typ, i+1, s.body)
		}
	}
	// Setting an equal value sends nothing; the next change follows.
	v.Set("text")
	v.Set("other")
	if w := recvWire(t, c.In); w.SN != uint64(len(steps)+1) || string(w.Body) != `"other"` {
		t.Fatalf("after an equal value: %+v", w)
	}
	// unsub ends it: 200, and the publisher's table is empty.
	sendWire(t, c.Out, wire{Type: "unsub", RID: "2", Key: "k"})
	if w := recvWire(t, c.In); w.Type != "reply" || w.RID != "2" || w.Status != 200 {
		t.Fatalf("unsub reply: %+v", w)
	}
	if subs := b.Subscriptions(); len(subs) != 0 {
		t.Fatalf("after unsub: %+v", subs)
	}
	v.Set("unseen")
	sendWire(t, c.Out, wire{Type: "event", RID: "3", ID: "t/none"})
	if w := recvWire(t, c.In); w.Type != "reply" || w.RID != "3" {
		t.Fatalf("a push after unsub: %+v", w)
	}
}

// Subscribing to what is not exported, or not published, fails with an
// invalid-subscription error; an interceptor can refuse with 403.
func TestSubscribeRefused(t *testing.T) {
	deny := func(next via.Handler) via.Handler {
		return func(ctx context.Context, c *via.Call) error {
			if c.IsSubscription() && c.ID == "t/denied" {
				return c.Reply(403, map[string]string{"error": "forbidden"})
			}
			return next(ctx, c)
		}
	}
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}, Interceptors: []via.Interceptor{deny}})
	rb := record(b)
	v := via.NewValue(1)
	b.Publish("hidden", via.Shared(v))
	b.Publish("t/denied", via.Shared(v))
	b.Publish("t/nil", func(ctx context.Context, c *via.Call) (via.Source, error) { return nil, nil })
	b.Handle("t/event", ok) // an event, not a subscription
	a := newEndpoint(t, via.Options{})
	ra := record(a)
	bID, _ := pair(t, a, b, serve(t, b))
	ctx := tctx(t)
	from := 0
	for _, id := range []string{"hidden", "t/missing", "t/event", "t/nil"} {
		_, err := via.Subscribe(ctx, a.Peer(bID), id, nil, 0)
		var se *via.StatusError
		if !errors.Is(err, via.ErrInvalidSubscription) || !errors.As(err, &se) || se.Status != 400 {
			t.Fatalf("%s: %v, want an invalid subscription", id, err)
		}
		if ev := ra.next(t, &from, kind(via.SubscribeFailed)); ev.ID != id || !errors.Is(ev.Err, via.ErrInvalidSubscription) {
			t.Fatalf("%s: event %+v", id, ev)
		}
	}
	if evs := rb.all(kind(via.UnknownSubscription)); len(evs) != 3 || evs[0].ID != "hidden" {
		t.Fatalf("publisher's unknown-subscription events: %+v", evs)
	}
	_, err := via.Subscribe(ctx, a.Peer(bID), "t/denied", nil, 0)
	var se *via.StatusError
	if !errors.As(err, &se) || se.Status != 403 || errors.Is(err, via.ErrInvalidSubscription) {
		t.Fatalf("denied: %v", err)
	}
	if s := a.Subscriptions(); len(s) != 0 {
		t.Fatalf("subscriber's table: %+v", s)
	}
	if s := b.Subscriptions(); len(s) != 0 {
		t.Fatalf("publisher's table: %+v", s)
	}
	if len(ra.all(kind(via.Unsubscribed))) != 0 {
		t.Fatal("a refused subscription reported as unsubscribed")
	}
}

// Disposing a subscription, explicitly or by cancelling its context,
// reaches the publisher, whose subscription context ends.
func TestDisposeReachesPublisher(t *testing.T) {
	for _, how := range []string{"close", "cancel"} {
		t.Run(how, func(t *testing.T) {
			started := make(chan struct{}, 1)
			ended := make(chan struct{}, 1)
			v := via.NewValue("x")
			b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
			b.Publish("t/v", func(ctx context.Context, c *via.Call) (via.Source, error) {
				started <- struct{}{}
				context.AfterFunc(ctx, func() { ended <- struct{}{} })
				return v, nil
			})
			a := newEndpoint(t, via.Options{})
			ra := record(a)
			bID, _ := pair(t, a, b, serve(t, b))
			ctx, cancel := context.WithCancel(tctx(t))
			defer cancel()
			r, err := via.Subscribe(ctx, a.Peer(bID), "t/v", nil, "")
			if err != nil {
				t.Fatal(err)
			}
			recv(t, started)
			w := r.Watch(tctx(t))
			waitFor(t, w, eq("x"))
			want := via.ErrUnsubscribed
			if how == "close" {
				r.Close()
				r.Close() // again: nothing
			} else {
				cancel()
				want = context.Canceled
			}
			recv(t, ended)
			recv(t, r.Done())
			if !errors.Is(r.Err(), want) {
				t.Fatalf("Err %v, want %v", r.Err(), want)
			}
			if ev := ra.first(t, kind(via.Unsubscribed)); ev.Key != r.Key() || !errors.Is(ev.Err, want) {
				t.Fatalf("event %+v", ev)
			}
			// The watch channel closes with the subscription.
			for range w {
			}
			waitEmpty(t, a, b)
		})
	}
}

// waitEmpty waits until both endpoints' subscription tables are empty. The
// publisher drops a subscription when the unsub reaches it.
func waitEmpty(t *testing.T, es ...*via.Endpoint) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for _, e := range es {
		for len(e.Subscriptions()) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("subscriptions left: %+v", e.Subscriptions())
			}
			runtime.Gosched()
			time.Sleep(time.Millisecond) // polling a table: no event says "empty"
		}
	}
}

// After a peer goes away, both subscription tables are empty, whichever
// end leaves and however (subscriptions made in both directions).
func TestPropertySubscriptionTablesEmptyAfterShutdown(t *testing.T) {
	for i := range runs {
		va, vb := via.NewValue(i), via.NewValue(-i)
		b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
		b.Publish("t/v", via.Shared(vb))
		rb := record(b)
		a := newEndpoint(t, via.Options{Exports: []string{"t/"}})
		a.Publish("t/v", via.Shared(va))
		ra := record(a)
		bID, aID := pair(t, a, b, serve(t, b))
		ctx := tctx(t)
		ab, err := via.Subscribe(ctx, a.Peer(bID), "t/v", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ba, err := via.Subscribe(ctx, b.Peer(aID), "t/v", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, ab.Watch(ctx), eq(-i))
		waitFor(t, ba.Watch(ctx), eq(i))
		if n := len(a.Subscriptions()); n != 2 {
			t.Fatalf("run %d: a has %d subscriptions", i, n)
		}
		switch i % 3 {
		case 0:
			a.Close()
		case 1:
			b.Disconnect(aID)
			ra.first(t, kindPeer(via.PeerRemoved, bID))
		case 2:
			a.Disconnect(bID)
			ra.first(t, kindPeer(via.PeerRemoved, bID))
		}
		rb.first(t, kindPeer(via.PeerRemoved, aID))
		for _, e := range []*via.Endpoint{a, b} {
			if s := e.Subscriptions(); len(s) != 0 {
				t.Fatalf("run %d: subscriptions left: %+v", i, s)
			}
		}
		recv(t, ab.Done())
		recv(t, ba.Done())
		if !errors.Is(ba.Err(), via.ErrUnknownPeer) {
			t.Fatalf("run %d: the terminator's remote ended with %v", i, ba.Err())
		}
		if i%3 == 0 && !errors.Is(ab.Err(), via.ErrEndpointClosed) {
			t.Fatalf("run %d: the closed endpoint's remote ended with %v", i, ab.Err())
		}
	}
}

// Every change of a published value reaches the subscriber, in order, and
// the merge-patch deltas reproduce each value exactly; when changes come
// faster than they are sent, the subscriber sees them in order, skipping
// some, and the last one wins.
func TestPropertySubscriptionOrder(t *testing.T) {
	r := seeded(t)
	v := via.NewValue[any](nil)
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	b.Publish("t/v", via.Shared(v))
	url := serve(t, b)
	a := newEndpoint(t, via.Options{})
	bID, _ := pair(t, a, b, url)
	ctx := tctx(t)
	remote, err := via.Subscribe[any](ctx, a.Peer(bID), "t/v", nil, "default")
	if err != nil {
		t.Fatal(err)
	}
	watch := remote.Watch(ctx)
	waitFor(t, watch, func(x any) bool { return x == nil })

	// A raw subscriber applies the patches itself.
	c := rawDial(t, url)
	sendWire(t, c.Out, wire{Type: "sub", RID: "1", Key: "k", ID: "t/v"})
	recvWire(t, c.In) // the reply
	var doc json.RawMessage
	var cur any
	var sn uint64
	patches := 0
	next := func() any {
		t.Helper()
		w := recvWire(t, c.In)
		if w.SN != sn+1 {
			t.Fatalf("sn %d after %d", w.SN, sn)
		}
		sn = w.SN
		switch w.Type {
		case "value":
			doc = w.Body
		case "patch":
			patches++
			d, err := jsonpatch.MergePatch(doc, w.Body)
			if err != nil {
				t.Fatal(err)
			}
			doc = d
		default:
			t.Fatalf("type %q", w.Type)
		}
		var x any
		if err := json.Unmarshal(doc, &x); err != nil {
			t.Fatal(err)
		}
		cur = x
		return x
	}
	if x := next(); x != nil {
		t.Fatalf("first value %v", x)
	}
	gen := func(prev any) any {
		for {
			var x any
			if r.IntN(5) == 0 {
				x = genValue(r, 0) // sometimes not an object
			} else {
				x = genObject(r, prev)
			}
			if toJSON(t, x) != toJSON(t, prev) {
				return x
			}
		}
	}
	// One change at a time: each one arrives.
	var prev any
	for i := range runs * 5 {
		x := gen(prev)
		prev = x
		v.Set(x)
		got := next()
		if !reflect.DeepEqual(got, roundTrip(t, x)) {
			t.Fatalf("change %d: rebuilt %#v\nwant %#v", i, got, x)
		}
		waitFor(t, watch, eq(roundTrip(t, x)))
	}
	if patches == 0 {
		t.Fatal("no merge patch was used")
	}
	// Bursts: whatever arrives is in order, and the last value wins.
	for run := range runs {
		// The values of a burst are distinct, so that seeing the last one
		// means the burst is over.
		var seq []any
		seen := map[string]bool{toJSON(t, prev): true}
		for range 1 + r.IntN(30) {
			x := gen(prev)
			if seen[toJSON(t, x)] {
				continue
			}
			seen[toJSON(t, x)] = true
			prev = x
			seq = append(seq, roundTrip(t, x))
			v.Set(x)
		}
		last := seq[len(seq)-1]
		pos := -1
		for !reflect.DeepEqual(cur, last) {
			got := next()
			i := pos + 1
			for i < len(seq) && !reflect.DeepEqual(seq[i], got) {
				i++
			}
			if i == len(seq) {
				t.Fatalf("burst %d: %#v is not after position %d of the sequence", run, got, pos)
			}
			pos = i
		}
		waitFor(t, watch, eq(last))
	}
}

// genObject makes a JSON object, often a small change of prev.
func genObject(rr *rand.Rand, prev any) any {
	m := map[string]any{}
	if pm, ok := prev.(map[string]any); ok && rr.IntN(4) != 0 {
		for k, v := range pm {
			m[k] = v
		}
		for range 1 + rr.IntN(3) {
			k := []string{"a", "b", "c", "d", "e"}[rr.IntN(5)]
			switch rr.IntN(4) {
			case 0:
				delete(m, k)
			case 1:
				m[k] = map[string]any{"n": float64(rr.IntN(100)), "s": []any{"x", float64(rr.IntN(3))}}
			default:
				m[k] = float64(rr.IntN(1000))
			}
		}
		return m
	}
	return genValueObject(rr)
}

func genValueObject(r *rand.Rand) any {
	m := map[string]any{}
	for range r.IntN(5) {
		m[string(rune('a'+r.IntN(8)))] = float64(r.IntN(10))
	}
	return m
}

// roundTrip is x as a subscriber decodes it.
func roundTrip(t *testing.T, x any) any {
	t.Helper()
	var y any
	if err := json.Unmarshal([]byte(toJSON(t, x)), &y); err != nil {
		t.Fatal(err)
	}
	return y
}

// A gap in the sequence numbers is never applied: the subscriber
// resynchronises (unsub, then sub) and takes the new whole value.
func TestSequenceGapResyncs(t *testing.T) {
	conns := make(chan *rawPeer, 1)
	s := httptest.NewServer((&wsasync.Upgrader{Subprotocols: []string{via.Subprotocol}}).GoWebsocket(
		func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
			p := &rawPeer{in: in, out: out, done: make(chan struct{})}
			conns <- p
			<-p.done
			for range in {
			}
		}))
	defer s.Close()
	a := newEndpoint(t, via.Options{})
	ra := record(a)
	ctx := tctx(t)
	id, err := a.Connect(ctx, wsURL(s))
	if err != nil {
		t.Fatal(err)
	}
	p := recv(t, conns)
	defer close(p.done)
	type obj = map[string]any
	res := make(chan error, 1)
	var remote *via.Remote[obj]
	go func() {
		var err error
		remote, err = via.Subscribe(ctx, a.Peer(id), "prices", "eur", obj{})
		res <- err
	}()
	sub := recvWire(t, p.in)
	if sub.Type != "sub" || sub.ID != "prices" || string(sub.Body) != `"eur"` || sub.Key == "" {
		t.Fatalf("sub: %+v", sub)
	}
	key := sub.Key
	sendWire(t, p.out, wire{Type: "reply", RID: sub.RID, Status: 200})
	if err := recv(t, res); err != nil {
		t.Fatal(err)
	}
	sendWire(t, p.out, wire{Type: "value", Key: key, SN: 1, Body: json.RawMessage(`{"a":1}`)})
	sendWire(t, p.out, wire{Type: "patch", Key: key, SN: 2, Body: json.RawMessage(`{"b":2}`)})
	w := remote.Watch(ctx)
	waitFor(t, w, eq(obj{"a": 1.0, "b": 2.0}))

	// sn 4 skips 3; a late sn 3 follows.
	sendWire(t, p.out, wire{Type: "patch", Key: key, SN: 4, Body: json.RawMessage(`{"c":4}`)})
	sendWire(t, p.out, wire{Type: "patch", Key: key, SN: 3, Body: json.RawMessage(`{"d":3}`)})
	if u := recvWire(t, p.in); u.Type != "unsub" || u.Key != key {
		t.Fatalf("want an unsub, got %+v", u)
	}
	resub := recvWire(t, p.in)
	if resub.Type != "sub" || resub.Key != key || resub.ID != "prices" || string(resub.Body) != `"eur"` {
		t.Fatalf("want a sub again, got %+v", resub)
	}
	// A call answered by a's read loop proves it has read everything above.
	sendWire(t, p.out, wire{Type: "event", RID: "sync", ID: "t/none"})
	if r := recvWire(t, p.in); r.Type != "reply" || r.RID != "sync" {
		t.Fatalf("sync: %+v", r)
	}
	if got := remote.Get(); !reflect.DeepEqual(got, obj{"a": 1.0, "b": 2.0}) {
		t.Fatalf("a gap was applied: %v", got)
	}
	if ev := ra.first(t, kind(via.BadMessage)); ev.Key != key || ev.Err == nil {
		t.Fatalf("gap event: %+v", ev)
	}
	// The old stream's tail is ignored until the new stream's value.
	sendWire(t, p.out, wire{Type: "patch", Key: key, SN: 5, Body: json.RawMessage(`{"e":5}`)})
	sendWire(t, p.out, wire{Type: "reply", RID: resub.RID, Status: 200})
	sendWire(t, p.out, wire{Type: "value", Key: key, SN: 1, Body: json.RawMessage(`{"z":1}`)})
	sendWire(t, p.out, wire{Type: "patch", Key: key, SN: 2, Body: json.RawMessage(`{"y":2}`)})
	waitFor(t, w, eq(obj{"z": 1.0, "y": 2.0}))
	if n := len(ra.all(kind(via.BadMessage))); n != 1 {
		t.Fatalf("%d bad-message events, want 1", n)
	}
	// A value for a key nobody subscribed to is reported.
	sendWire(t, p.out, wire{Type: "value", Key: "nobody", SN: 1, Body: json.RawMessage(`1`)})
	if ev := ra.first(t, kind(via.UnknownSubscription)); ev.Key != "nobody" {
		t.Fatalf("unknown subscription event: %+v", ev)
	}
	// Close sends unsub.
	go remote.Close()
	if u := recvWire(t, p.in); u.Type != "unsub" || u.Key != key {
		t.Fatalf("want an unsub on close, got %+v", u)
	}
	recv(t, remote.Done())
}

type rawPeer struct {
	in   <-chan wsasync.Message
	out  chan<- wsasync.Message
	done chan struct{}
}

// A subscriber reconnects to a publisher restarted on the same port and
// gets its new value; the subscription is sent again only after
// OnReconnect has re-authenticated.
func TestResubscribeAfterRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	auth := func(next via.Handler) via.Handler {
		return func(ctx context.Context, c *via.Call) error {
			if c.Peer().Session()["token"] != "secret" {
				return c.Reply(403, map[string]string{"error": "no token"})
			}
			return next(ctx, c)
		}
	}
	start := func(ln net.Listener, value string) (*via.Endpoint, func()) {
		b := via.New(via.Options{
			Logger:        quiet,
			Exports:       []string{"t/"},
			Interceptors:  []via.Interceptor{auth},
			AcceptSession: func(p *via.Peer, m map[string]any) (map[string]any, bool) { return m, true },
		})
		b.Publish("t/v", via.Shared(via.NewValue(value)))
		s := httptest.NewUnstartedServer(b)
		s.Listener = ln
		s.Start()
		return b, func() { b.Close(); s.Close() }
	}
	_, stop1 := start(ln, "before")
	defer stop1()

	hooked := make(chan struct{}, 4)
	a := newEndpoint(t, via.Options{
		ReconnectMax: 100 * time.Millisecond,
		OnReconnect: func(ctx context.Context, p *via.Peer) error {
			hooked <- struct{}{}
			return p.SyncSession(ctx)
		},
	})
	ra := record(a)
	ctx := tctx(t)
	id, err := a.Connect(ctx, "ws://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	p := a.Peer(id)
	if _, err := via.Subscribe(ctx, p, "t/v", nil, ""); err == nil {
		t.Fatal("subscribed without a token")
	}
	p.SetSession(map[string]any{"token": "secret"})
	if err := p.SyncSession(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := via.Subscribe(ctx, p, "t/v", nil, "default")
	if err != nil {
		t.Fatal(err)
	}
	w := r.Watch(ctx)
	waitFor(t, w, eq("before"))

	stop1()
	ra.first(t, kindPeer(via.PeerDisconnected, id))
	if r.Get() != "before" {
		t.Fatalf("value while disconnected: %q", r.Get())
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, stop2 := start(ln2, "after")
	defer stop2()
	waitFor(t, w, eq("after"))
	recv(t, hooked)
	from := 0
	ra.next(t, &from, kind(via.Subscribed))
	ra.next(t, &from, kind(via.Subscribed)) // again, on the new server
	if evs := ra.all(kind(via.SubscribeFailed)); len(evs) != 1 {
		t.Fatalf("subscribe failures: %d, want the one without a token", len(evs))
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
}

// A subscriber whose connection is backed up while 10,000 changes are
// published gets the last value; the publisher coalesces instead of
// queueing, so memory stays bounded and far fewer than 10,000 pushes go out.
func TestSlowSubscriberGetsLatest(t *testing.T) {
	const n = 10_000
	const size = 16 << 10
	type big struct {
		N   int    `json:"n"`
		Pad string `json:"pad"`
	}
	pad := func(i int) string { return strings.Repeat(string(rune('a'+i%26)), size) }
	v := via.NewValue(big{0, pad(0)})
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	b.Publish("t/v", via.Shared(v))
	release := make(chan struct{})
	blocked := make(chan struct{}, 1)
	a := newEndpoint(t, via.Options{Exports: []string{"t/"}, QueueSize: 1})
	a.Handle("t/block", func(ctx context.Context, c *via.Call) error {
		blocked <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	bID, aID := pair(t, a, b, serve(t, b))
	ctx := tctx(t)
	r, err := via.Subscribe(ctx, a.Peer(bID), "t/v", nil, big{-1, ""})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, r.Watch(ctx), func(x big) bool { return x.N == 0 })

	// Stall a's read loop: one call blocks its worker, the next fills its
	// queue, and a stops reading the connection.
	for range 2 {
		if err := b.Dispatch(ctx, aID, "t/block", nil); err != nil {
			t.Fatal(err)
		}
	}
	recv(t, blocked)
	runtime.GC()
	var before, during runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 1; i <= n; i++ {
		v.Set(big{i, pad(i)})
	}
	runtime.GC()
	runtime.ReadMemStats(&during)
	grew := int64(during.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %d KiB while %d changes of %d KiB were published", grew>>10, n, size>>10)
	if limit := int64(64 << 20); grew > limit {
		t.Fatalf("heap grew by %d MiB", grew>>20)
	}

	// Nobody reads the watch channel meanwhile: it yields the latest.
	w := r.Watch(ctx)
	close(release)
	last := waitFor(t, w, func(x big) bool { return x.N == n })
	if last.Pad != pad(n) {
		t.Fatal("the last value is corrupt")
	}
	var sn uint64
	for _, s := range b.Subscriptions() {
		sn = s.SN
	}
	t.Logf("%d pushes for %d changes", sn, n)
	if sn >= n/2 {
		t.Fatalf("%d pushes for %d changes: not coalesced", sn, n)
	}
}

// Value: Watch delivers the current value first, then the latest.
func TestValueWatchLatestWins(t *testing.T) {
	var v via.Value[int] // the zero Value works
	ctx, cancel := context.WithCancel(context.Background())
	w := v.Watch(ctx)
	if x := recv(t, w); x != 0 {
		t.Fatalf("first %d", x)
	}
	for i := 1; i <= 100; i++ {
		v.Set(i)
	}
	waitFor(t, w, eq(100))
	if got := v.Update(func(x int) int { return x * 2 }); got != 200 || v.Get() != 200 {
		t.Fatalf("update %d", got)
	}
	if x := recv(t, w); x != 200 {
		t.Fatalf("after update %d", x)
	}
	cancel()
	for range w {
	}
}

// The endpoint serves the browser client and its types.
func TestServesClient(t *testing.T) {
	b := newEndpoint(t, via.Options{})
	s := httptest.NewServer(b)
	defer s.Close()
	for _, c := range []struct{ path, ctype, has string }{
		{"/via/via.js", "text/javascript; charset=utf-8", "export class Via"},
		{"/via.d.ts", "text/plain; charset=utf-8", "export class Via"},
	} {
		resp, err := http.Get(s.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		_, err = io.Copy(&sb, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.ctype || !strings.Contains(sb.String(), c.has) {
			t.Fatalf("%s: %d %q %v", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), err)
		}
		etag := resp.Header.Get("ETag")
		req, _ := http.NewRequest("GET", s.URL+c.path, nil)
		req.Header.Set("If-None-Match", etag)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("%s with its ETag: %d", c.path, resp.StatusCode)
		}
	}
	if string(via.ClientJS()[:2]) != "//" {
		t.Fatal("ClientJS")
	}
}
