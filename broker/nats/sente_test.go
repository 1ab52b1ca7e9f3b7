package nats

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wsasync/wsasync/sente"
)

// Two sente servers on two brokers: a push made on one reaches a client of
// the other, and both see the user connected.
func TestSenteServers(t *testing.T) {
	url := serverURL(t)
	prefix := testPrefix(t, url)
	server := func() (*sente.Server, string) {
		b := newNode(t, url, Options{Prefix: prefix})
		s := sente.NewServer(sente.Options{
			Broker: b,
			UserID: func(r *http.Request, _ string) string { return r.URL.Query().Get("user") },
		})
		ctx, cancel := context.WithCancel(context.Background())
		drained := make(chan struct{})
		go func() { // the application's events
			defer close(drained)
			for {
				select {
				case <-s.Events():
				case <-ctx.Done():
					return
				}
			}
		}()
		hs := httptest.NewServer(s)
		t.Cleanup(func() {
			hs.Close()
			sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
			defer stop()
			s.Shutdown(sctx)
			cancel()
			<-drained
		})
		return s, "ws" + strings.TrimPrefix(hs.URL, "http")
	}
	sa, urlA := server()
	sb, _ := server()

	c := sente.NewClient(urlA, sente.ClientOptions{Params: map[string][]string{"user": {"ada"}}})
	defer c.Close()
	for s := range c.StateChanges() {
		if s.Open {
			break
		}
	}
	ctx := ctxT(t)
	for _, s := range []*sente.Server{sa, sb} {
		users, err := s.ConnectedUsers(ctx)
		if err != nil || !slices.Equal(users, []string{"ada"}) {
			t.Fatalf("connected users %q, %v", users, err)
		}
	}
	if err := sb.Push("ada", "demo/note", "from b"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-c.Events():
		var note string
		ev.Decode(&note)
		if ev.ID != "demo/note" || note != "from b" {
			t.Fatalf("got %s %q", ev.ID, note)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no push from the other node")
	}
}
