package via_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wsasync/wsasync/via"
)

// runs is how many values each property tries, as via's tests do.
const runs = 20

// Values of every JSON kind, in the form encoding/json decodes into an
// interface: nil, bool, float64, string, []any, map[string]any.
func genValue(r *rand.Rand, depth int) any {
	k := r.IntN(7)
	if depth >= 3 && k >= 5 {
		k = r.IntN(5)
	}
	switch k {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		if r.IntN(2) == 0 {
			return float64(r.Int64N(1<<53) - 1<<52) // exact integers
		}
		return r.NormFloat64() * float64(int64(1)<<r.IntN(60))
	case 3, 4:
		return genString(r, 16)
	case 5:
		a := make([]any, r.IntN(5))
		for i := range a {
			a[i] = genValue(r, depth+1)
		}
		return a
	default:
		m := make(map[string]any)
		for range r.IntN(5) {
			m[genString(r, 8)] = genValue(r, depth+1)
		}
		return m
	}
}

// genString makes valid UTF-8 with the characters JSON must escape, HTML
// characters, and runes from every plane.
func genString(r *rand.Rand, n int) string {
	special := []rune{'"', '\\', '/', '\n', '\t', 0, 0x1f, '<', '>', '&', 0x2028, 0x2029, 0xfeff, 0xfffd, 'é', '中', 0x1f600}
	var b strings.Builder
	for range r.IntN(n + 1) {
		switch r.IntN(4) {
		case 0:
			b.WriteRune(special[r.IntN(len(special))])
		case 1:
			b.WriteRune(rune(0x20 + r.IntN(0x5f)))
		default:
			c := rune(r.IntN(0x10ffff))
			if c >= 0xd800 && c <= 0xdfff {
				c = 'x'
			}
			b.WriteRune(c)
		}
	}
	return b.String()
}

func genHeaders(r *rand.Rand) map[string]string {
	h := make(map[string]string)
	for range r.IntN(5) + 1 {
		k := genString(r, 8)
		if k == "" || k == "hops" {
			k = "k" + k
		}
		h[k] = genString(r, 16)
	}
	return h
}

func seeded(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 0x5eed))
}

// roundTrip decodes a received body the way the sender's value was made.
func equalJSON(t *testing.T, want any, got any) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("value changed on the way:\nsent %#v\ngot  %#v", want, got)
	}
}

// Arbitrary values arrive unchanged through Dispatch, in both directions.
func TestPropertyDispatchRoundTrip(t *testing.T) {
	r := seeded(t)
	bodies := make(chan []byte, 1)
	store := func(ctx context.Context, c *via.Call) error { bodies <- c.Body; return nil }
	a := newEndpoint(t, via.Options{Exports: []string{"t/store"}})
	b := newEndpoint(t, via.Options{Exports: []string{"t/store"}})
	a.Handle("t/store", store)
	b.Handle("t/store", store)
	bID, aID := pair(t, a, b, serve(t, b))
	ctx := tctx(t)
	for i := range runs {
		v := genValue(r, 0)
		from, to := a, bID
		if i%2 == 1 {
			from, to = b, aID
		}
		if err := from.Dispatch(ctx, to, "t/store", v); err != nil {
			t.Fatalf("dispatch %#v: %v", v, err)
		}
		var got any
		if err := jsonUnmarshal(recv(t, bodies), &got); err != nil {
			t.Fatal(err)
		}
		equalJSON(t, v, got)
	}
}

// Arbitrary values come back unchanged from an echo Invoke, in both
// directions.
func TestPropertyInvokeRoundTrip(t *testing.T) {
	r := seeded(t)
	echo := func(ctx context.Context, c *via.Call) error { return c.Reply(200, c.Body) }
	a := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	a.Handle("t/echo", echo)
	b.Handle("t/echo", echo)
	bID, aID := pair(t, a, b, serve(t, b))
	ctx := tctx(t)
	for i := range runs {
		v := genValue(r, 0)
		from, to := a, bID
		if i%2 == 1 {
			from, to = b, aID
		}
		var got any
		if err := from.Invoke(ctx, to, "t/echo", v, &got); err != nil {
			t.Fatalf("invoke %#v: %v", v, err)
		}
		equalJSON(t, v, got)
	}
}

// After one end shuts down or disconnects the other, both peer tables are
// empty.
func TestPropertyPeerTablesEmptyAfterShutdown(t *testing.T) {
	for i := range runs {
		b := newEndpoint(t, via.Options{})
		rb := record(b)
		url := serve(t, b)
		a := newEndpoint(t, via.Options{})
		ra := record(a)
		bID, aID := pair(t, a, b, url)
		switch i % 3 {
		case 0: // the originator's endpoint shuts down
			a.Close()
		case 1: // the terminator disconnects the originator, which stays away
			if err := b.Disconnect(aID); err != nil {
				t.Fatal(err)
			}
			ra.first(t, kindPeer(via.PeerRemoved, bID))
		case 2: // the originator disconnects
			if err := a.Disconnect(bID); err != nil {
				t.Fatal(err)
			}
			ra.first(t, kindPeer(via.PeerRemoved, bID))
		}
		rb.first(t, kindPeer(via.PeerRemoved, aID))
		if ps := a.Peers(); len(ps) != 0 {
			t.Fatalf("run %d: originator's table: %v", i, ps)
		}
		if ps := b.Peers(); len(ps) != 0 {
			t.Fatalf("run %d: terminator's table: %v", i, ps)
		}
	}
}

// Calls to what is not exported, or has no handler, answer 400 unknown event
// and are reported; Dispatch is reported too.
func TestPropertyUnexportedEvents(t *testing.T) {
	r := seeded(t)
	a := newEndpoint(t, via.Options{})
	b := newEndpoint(t, via.Options{Exports: []string{"open/", "exact"}})
	ok := func(ctx context.Context, c *via.Call) error { return c.Reply(200, "ok") }
	b.Handle("hidden", ok)
	b.Handle("open/x", ok)
	b.Handle("exact", ok)
	b.Handle("exactly", ok)
	b.Handle("openx", ok)
	rb := record(b)
	bID, _ := pair(t, a, b, serve(t, b))
	ctx := tctx(t)
	fixed := []string{"hidden", "open/y", "exactly", "openx", "open", "via/session"}
	from := 0
	for i := range runs {
		id := "r/" + genString(r, 12)
		if i < len(fixed) {
			id = fixed[i]
		}
		err := a.Invoke(ctx, bID, id, genValue(r, 0), nil)
		var se *via.StatusError
		if !errors.As(err, &se) || se.Status != http.StatusBadRequest {
			t.Fatalf("invoke %q: %v, want status 400", id, err)
		}
		var body struct{ Error, ID string }
		if err := se.Decode(&body); err != nil || body.Error != "unknown event" || body.ID != id {
			t.Fatalf("invoke %q: body %s", id, se.Body)
		}
		if ev := rb.next(t, &from, kind(via.UnknownEvent)); ev.ID != id {
			t.Fatalf("unknown-event for %q, want %q", ev.ID, id)
		}
		if err := a.Dispatch(ctx, bID, id, nil); err != nil {
			t.Fatal(err)
		}
		if ev := rb.next(t, &from, kind(via.UnknownEvent)); ev.ID != id {
			t.Fatalf("unknown-event for dispatched %q, want %q", ev.ID, id)
		}
	}
	for _, id := range []string{"open/x", "exact"} {
		var s string
		if err := a.Invoke(ctx, bID, id, nil, &s); err != nil || s != "ok" {
			t.Fatalf("exported %q: %q, %v", id, s, err)
		}
	}
}

// A route a→b→c→a, each hop's handler forwarding the event with a "hops"
// header it extends; the body and every other header survive.
func TestPropertyThreeHops(t *testing.T) {
	r := seeded(t)
	names := []string{"a", "b", "c"}
	eps := make([]*via.Endpoint, 3)
	urls := make([]string, 3)
	for i := range eps {
		eps[i] = newEndpoint(t, via.Options{Exports: []string{"hop/"}})
		urls[i] = serve(t, eps[i])
	}
	next := make([]string, 3) // the peer id each endpoint forwards to
	for i := range eps {
		id, err := eps[i].Connect(tctx(t), urls[(i+1)%3])
		if err != nil {
			t.Fatal(err)
		}
		next[i] = id
	}
	type arrival struct {
		body    []byte
		headers map[string]string
	}
	done := make(chan arrival, 1)
	for i, e := range eps {
		e.Handle("hop/next", func(ctx context.Context, c *via.Call) error {
			h := make(map[string]string, len(c.Headers))
			for k, v := range c.Headers {
				h[k] = v
			}
			if strings.Count(h["hops"], ",") == 2 {
				done <- arrival{c.Body, h}
				return nil
			}
			h["hops"] += "," + names[i]
			return e.Dispatch(via.WithHeaders(ctx, h), next[i], "hop/next", c.Body)
		})
	}
	ctx := tctx(t)
	for range runs {
		v := genValue(r, 0)
		h := genHeaders(r)
		h["hops"] = "a"
		if err := eps[0].Dispatch(via.WithHeaders(ctx, h), next[0], "hop/next", v); err != nil {
			t.Fatal(err)
		}
		got := recv(t, done)
		if got.headers["hops"] != "a,b,c" {
			t.Fatalf("hops %q", got.headers["hops"])
		}
		h["hops"] = "a,b,c"
		if !reflect.DeepEqual(got.headers, h) {
			t.Fatalf("headers changed:\nsent %q\ngot  %q", h, got.headers)
		}
		var gv any
		if err := jsonUnmarshal(got.body, &gv); err != nil {
			t.Fatal(err)
		}
		equalJSON(t, v, gv)
	}
}

// Arbitrary headers reach the handler unchanged, on Invoke and Dispatch.
func TestPropertyHeadersSurvive(t *testing.T) {
	r := seeded(t)
	seen := make(chan map[string]string, 1)
	a := newEndpoint(t, via.Options{})
	b := newEndpoint(t, via.Options{Exports: []string{"t/"}})
	b.Handle("t/headers", func(ctx context.Context, c *via.Call) error {
		if !c.WantsReply() {
			seen <- c.Headers
			return nil
		}
		return c.Reply(200, c.Headers)
	})
	bID, _ := pair(t, a, b, serve(t, b))
	ctx := tctx(t)
	for i := range runs {
		h := genHeaders(r)
		var got map[string]string
		if i%2 == 0 {
			if err := a.Invoke(via.WithHeaders(ctx, h), bID, "t/headers", nil, &got); err != nil {
				t.Fatal(err)
			}
		} else {
			if err := a.Dispatch(via.WithHeaders(ctx, h), bID, "t/headers", nil); err != nil {
				t.Fatal(err)
			}
			got = recv(t, seen)
		}
		if !reflect.DeepEqual(got, h) {
			t.Fatalf("headers changed:\nsent %q\ngot  %q", h, got)
		}
	}
}
