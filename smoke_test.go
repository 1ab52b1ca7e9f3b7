package wsasync_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wsasync/wsasync"
)

func TestSmokeEcho(t *testing.T) {
	srv := httptest.NewServer(wsasync.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		defer close(out)
		for m := range in {
			out <- m
		}
	}))
	defer srv.Close()
	c, err := wsasync.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		c.Out <- wsasync.Text("hello")
		m := <-c.In
		if string(m.Data) != "hello" || m.Type != wsasync.TextMessage {
			t.Fatalf("got %v %q", m.Type, m.Data)
		}
	}
	big := make([]byte, 1<<20)
	c.Out <- wsasync.Binary(big)
	m := <-c.In
	if len(m.Data) != len(big) {
		t.Fatalf("len %d", len(m.Data))
	}
	c.Out <- wsasync.Closed(4000, "bye")
	if _, ok := <-c.In; ok {
		t.Fatal("in not closed")
	}
	err = <-c.Errs
	if wsasync.CloseStatus(err) != 4000 {
		t.Fatalf("err %v", err)
	}
	close(c.Out)
}
