package sente_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/sente"
)

func TestSmoke(t *testing.T) {
	s := sente.NewServer(sente.Options{UserID: func(r *http.Request, cid string) string { return r.URL.Query().Get("u") }})
	srv := httptest.NewServer(s)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var r sente.Router
	r.Handle("test/echo", func(ctx context.Context, ev *sente.Event) { ev.Reply(ev.Data) })
	done := make(chan struct{})
	go func() { r.Run(ctx, s.Events()); close(done) }()

	d := wsasync.Dialer{Subprotocols: []string{"sente.v1.json"}}
	c, err := d.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/?client-id=abc&u=alice")
	if err != nil {
		t.Fatal(err)
	}
	hs := <-c.In
	t.Logf("handshake %s proto %q", hs.Data, c.Subprotocol)
	c.Out <- wsasync.Text(`[["test/echo",{"x":1}],"cb1"]`)
	t.Logf("reply %s", (<-c.In).Data)
	s.Push("alice", "chat/msg", "hi")
	s.Push("alice", "chat/msg", "there")
	t.Logf("push %s", (<-c.In).Data)
	c.Out <- wsasync.Text(`garbage`)
	c.Out <- wsasync.Text(`[["bad"],null]`)
	c.Out <- wsasync.Text(`[["chsk/ws-ping"],"p"]`)
	t.Logf("pong %s", (<-c.In).Data)
	close(c.Out)
	<-c.Errs
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := s.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
}
