package cluster_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	bin, cleanup, err := buildNode()
	if err != nil {
		fmt.Fprintln(os.Stderr, "building the node command:", err)
		os.Exit(1)
	}
	nodeBin = bin
	code := m.Run()
	cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func sloggerDiscard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// threeNodes starts three nodes on the broker.
func threeNodes(t *testing.T, brokerURL string, flags ...string) []*node {
	nodes := make([]*node, 3)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { nodes[i] = startNode(t, fmt.Sprintf("node%d", i), brokerURL, flags...) })
	}
	wg.Wait()
	for _, n := range nodes {
		if n == nil {
			t.FailNow()
		}
	}
	return nodes
}

// TestPushAcrossNodes: a user with a tab on each of three nodes gets every
// push made on any node, once and in order; so do a push to one client and a
// broadcast; presence opens and closes once for the cluster.
func TestPushAcrossNodes(t *testing.T) {
	for name, burl := range brokerURLs(t) {
		t.Run(name, func(t *testing.T) {
			nodes := threeNodes(t, burl, "-grace", "300ms")
			var ann []*recorder
			for i, n := range nodes {
				ann = append(ann, connect(t, n.url(), "ann", fmt.Sprintf("ann%d", i)))
			}
			bob := connect(t, nodes[1].url(), "bob", "bob0")

			if err := nodes[0].push("user", "ann", 0, 200); err != nil {
				t.Fatal(err)
			}
			for i, r := range ann {
				r.expectSeq(t, fmt.Sprintf("ann%d", i), 0, 0, 200)
			}
			if err := nodes[2].push("client", "bob0", 1000, 50); err != nil {
				t.Fatal(err)
			}
			bob.expectSeq(t, "bob0", 0, 1000, 50)
			if err := nodes[1].push("all", "", 5000, 20); err != nil {
				t.Fatal(err)
			}
			for i, r := range ann {
				r.expectSeq(t, fmt.Sprintf("ann%d broadcast", i), 200, 5000, 20)
			}
			bob.expectSeq(t, "bob0 broadcast", 50, 5000, 20)

			eventually(t, "ann opened once", func() bool { return total("chsk/uidport-open ann ", nodes...) == 1 })
			eventually(t, "bob opened once", func() bool { return total("chsk/uidport-open bob ", nodes...) == 1 })
			for _, n := range nodes {
				if users, err := n.users(); err != nil || !slices.Equal(users, []string{"ann", "bob"}) {
					t.Errorf("%s: users %v %v, want [ann bob]", n.name, users, err)
				}
			}
			ann[0].close()
			ann[1].close()
			bob.close()
			eventually(t, "bob closed once", func() bool { return total("chsk/uidport-close bob ", nodes...) == 1 })
			ann[2].close()
			eventually(t, "ann closed once", func() bool { return total("chsk/uidport-close ann ", nodes...) == 1 })
			for _, ev := range []string{"chsk/uidport-open ann ", "chsk/uidport-close ann ", "chsk/uidport-close bob "} {
				if c := total(ev, nodes...); c != 1 {
					t.Errorf("%q fired %d times", ev, c)
				}
			}
			if users, err := nodes[0].users(); err != nil || len(users) != 0 {
				t.Errorf("users after all left: %v %v", users, err)
			}
		})
	}
}

// TestAjaxAcrossNodes: an Ajax client whose polls and posts go to a
// different node each time gets every push, once, in order, and every reply.
func TestAjaxAcrossNodes(t *testing.T) {
	for name, burl := range brokerURLs(t) {
		t.Run(name, func(t *testing.T) {
			nodes := threeNodes(t, burl, "-grace", "2s")
			const n = 300
			get := func(nd *node, pos string, extra ...string) []json.RawMessage {
				q := url.Values{"client-id": {"aj"}, "u": {"carl"}}
				if pos != "" {
					q.Set("pos", pos)
				}
				for i := 0; i+1 < len(extra); i += 2 {
					q.Set(extra[i], extra[i+1])
				}
				resp, err := http.Get("http://" + nd.addr + "/chsk?" + q.Encode())
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var f []json.RawMessage
				if err := json.NewDecoder(resp.Body).Decode(&f); err != nil || resp.StatusCode != 200 {
					t.Fatalf("poll %s: %d %v", nd.name, resp.StatusCode, err)
				}
				return f
			}
			hs := get(nodes[0], "", "handshake", "1")
			var ev []json.RawMessage
			var args []json.RawMessage
			json.Unmarshal(hs[0], &ev)
			json.Unmarshal(ev[1], &args)
			var pos string
			if json.Unmarshal(args[3], &pos) != nil || pos == "" {
				t.Fatalf("handshake without a position: %s", hs[0])
			}

			pushed := make(chan error, 1)
			go func() { pushed <- nodes[2].push("user", "carl", 0, n) }()
			var got []int
			for i := 0; len(got) < n; i++ {
				f := get(nodes[i%3], pos)
				if len(f) == 3 {
					json.Unmarshal(f[2], &pos)
				}
				var batch [][]json.RawMessage
				if json.Unmarshal(f[0], &batch) != nil {
					continue // chsk/timeout, or a handshake
				}
				for _, e := range batch {
					var v int
					json.Unmarshal(e[1], &v)
					got = append(got, v)
				}
				if i > 10*n {
					t.Fatalf("too many polls: got %d pushes", len(got))
				}
			}
			if err := <-pushed; err != nil {
				t.Fatal(err)
			}
			for i, v := range got {
				if v != i {
					t.Fatalf("push %d is %d: %v", i, v, got[max(0, i-3):min(len(got), i+3)])
				}
			}
			if len(got) != n {
				t.Fatalf("%d pushes, want %d", len(got), n)
			}
			// A post with a callback, to yet another node, is answered there.
			resp, err := http.Post("http://"+nodes[1].addr+"/chsk?client-id=aj&u=carl", "application/json", strings.NewReader(`[["t/echo",42],"cb1"]`))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != `[42,"cb1"]` {
				t.Errorf("reply: %s", body)
			}
			if c := total("chsk/uidport-open carl ", nodes...); c != 1 {
				t.Errorf("carl opened %d times", c)
			}
		})
	}
}
