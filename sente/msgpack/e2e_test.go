package msgpack

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/sente"
)

// testClient is a raw WebSocket client speaking the protocol by hand.
type testClient struct {
	t *testing.T
	c *wsasync.Conn
}

func (tc testClient) recv() wsasync.Message {
	tc.t.Helper()
	select {
	case m, ok := <-tc.c.In:
		if !ok {
			tc.t.Fatalf("connection ended: %v", <-tc.c.Errs)
		}
		if m.Type != wsasync.BinaryMessage {
			tc.t.Fatalf("got a %v frame, want binary", m.Type)
		}
		return m
	case <-time.After(5 * time.Second):
		tc.t.Fatal("no frame within 5 s")
	}
	panic("unreachable")
}

// split splits b into an array of exactly n elements.
func split(t *testing.T, b []byte, n int) [][]byte {
	t.Helper()
	parts, err := p.SplitArray(b)
	if err != nil || len(parts) != n {
		t.Fatalf("% x: %d elements, %v; want %d", b, len(parts), err, n)
	}
	return parts
}

func unpack[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := p.Unmarshal(b, &v); err != nil {
		t.Fatalf("% x: %v", b, err)
	}
	return v
}

type echoReply struct {
	Got  map[string]any `json:"got"`
	From string         `json:"from"`
}

func TestEndToEnd(t *testing.T) {
	s := sente.NewServer(sente.Options{
		Packer:        Packer{},
		UserID:        func(r *http.Request, _ string) string { return r.URL.Query().Get("u") },
		HandshakeData: func(*http.Request) any { return map[string]any{"motd": "hi"} },
		SendWindow:    -1,
		Logger:        slog.New(slog.DiscardHandler),
	})
	srv := httptest.NewServer(s)
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var r sente.Router
	bad := make(chan *sente.Event, 4)
	r.Handle("test/echo", func(_ context.Context, ev *sente.Event) {
		var got map[string]any
		if err := ev.Decode(&got); err != nil {
			t.Errorf("Decode: %v", err)
		}
		if err := ev.Reply(echoReply{Got: got, From: ev.UserID}); err != nil {
			t.Errorf("Reply: %v", err)
		}
	})
	r.Handle("test/raw", func(_ context.Context, ev *sente.Event) {
		var raw sente.Raw
		if err := ev.Decode(&raw); err != nil {
			t.Errorf("Decode into sente.Raw: %v", err)
		}
		_ = ev.Reply(raw) // sent as it is
	})
	r.Handle(sente.EventBadPackage, func(_ context.Context, ev *sente.Event) { bad <- ev })
	r.Handle(sente.EventBadEvent, func(_ context.Context, ev *sente.Event) { bad <- ev })
	routed := make(chan struct{})
	go func() { r.Run(ctx, s.Events()); close(routed) }()

	d := wsasync.Dialer{Subprotocols: []string{"sente.v1.msgpack"}}
	c, err := d.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/?client-id=c1&u=alice")
	if err != nil {
		t.Fatal(err)
	}
	if c.Subprotocol != "sente.v1.msgpack" {
		t.Fatalf("subprotocol %q", c.Subprotocol)
	}
	tc := testClient{t, c}

	// [["chsk/handshake", [uid, nil, data, pos, lost]], nil]
	env := split(t, tc.recv().Data, 2)
	if env[1][0] != nilCode {
		t.Fatalf("handshake cb % x", env[1])
	}
	ev := split(t, env[0], 2)
	if id := unpack[string](t, ev[0]); id != sente.EventHandshake {
		t.Fatalf("first event %q", id)
	}
	args := split(t, ev[1], 5)
	if uid := unpack[string](t, args[0]); uid != "alice" {
		t.Fatalf("uid %q", uid)
	}
	if hd := unpack[map[string]string](t, args[2]); args[1][0] != nilCode || hd["motd"] != "hi" {
		t.Fatalf("handshake args % x % x", args[1], args[2])
	}

	// An event with a callback id, and its reply [value, cb].
	send := func(id string, data any, cb any) {
		t.Helper()
		elems := [][]byte{mustMarshal(t, id)}
		if data != nil {
			elems = append(elems, mustMarshal(t, data))
		}
		c.Out <- wsasync.Binary(p.AppendArray(nil, p.AppendArray(nil, elems...), mustMarshal(t, cb)))
	}
	send("test/echo", map[string]any{"x": 1, "s": "ü"}, "cb1")
	reply := split(t, tc.recv().Data, 2)
	if cb := unpack[string](t, reply[1]); cb != "cb1" {
		t.Fatalf("reply cb %q", cb)
	}
	got := unpack[echoReply](t, reply[0])
	if got.From != "alice" || got.Got["x"] != int8(1) || got.Got["s"] != "ü" {
		t.Fatalf("reply %+v", got)
	}

	// Data kept packed by the handler and sent back as it is.
	data := mustMarshal(t, []any{1.5, []byte{0xff}, nil})
	c.Out <- wsasync.Binary(p.AppendArray(nil, p.AppendArray(nil, mustMarshal(t, "test/raw"), data), mustMarshal(t, "cb2")))
	reply = split(t, tc.recv().Data, 2)
	if string(reply[0]) != string(data) || unpack[string](t, reply[1]) != "cb2" {
		t.Fatalf("raw reply % x", reply)
	}

	// Keep-alive ping from a client without WebSocket pings.
	send(sente.EventPing, nil, "p")
	reply = split(t, tc.recv().Data, 2)
	if unpack[string](t, reply[0]) != "pong" || unpack[string](t, reply[1]) != "p" {
		t.Fatalf("pong % x", reply)
	}

	// Pushes come as a batch [[event...], nil].
	if err := s.Push("alice", "chat/msg", "hello"); err != nil {
		t.Fatal(err)
	}
	env = split(t, tc.recv().Data, 3) // [batch, nil, pos]
	batch := split(t, env[0], 1)
	push := split(t, batch[0], 2)
	if unpack[string](t, push[0]) != "chat/msg" || unpack[string](t, push[1]) != "hello" || env[1][0] != nilCode {
		t.Fatalf("push % x", env)
	}

	// Garbage and a bad event are reported, and the connection goes on.
	c.Out <- wsasync.Binary([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	c.Out <- wsasync.Binary(append(append([]byte{0x92}, nested(200)...), nilCode))
	send("no-namespace", nil, nil)
	for _, want := range []string{sente.EventBadPackage, sente.EventBadPackage, sente.EventBadEvent} {
		select {
		case ev := <-bad:
			if ev.ID != want {
				t.Fatalf("got %s, want %s", ev.ID, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s", want)
		}
	}
	send(sente.EventPing, nil, "p2")
	if reply = split(t, tc.recv().Data, 2); unpack[string](t, reply[1]) != "p2" {
		t.Fatalf("after garbage: % x", reply)
	}

	close(c.Out)
	<-c.Errs
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := s.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-routed
}
