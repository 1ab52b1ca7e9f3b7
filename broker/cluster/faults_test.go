package cluster_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wsasync/wsasync/internal/testenv"
)

// TestKillNode: a node killed with SIGKILL during a stream of pushes. Clients
// of the surviving nodes lose nothing; the killed node's clients reconnect
// through the load balancer to the others and resume with nothing lost and
// nothing doubled; a client that does not come back leaves presence once
// the node's liveness expires.
//
// The same holds for a node stopped gracefully (SIGTERM: Shutdown, closing
// its connections with 1012), which leaves presence like a dead node.
func TestKillNode(t *testing.T) {
	for name, burl := range brokerURLs(t) {
		for _, how := range []string{"kill", "stop"} {
			t.Run(name+"/"+how, func(t *testing.T) { killNode(t, burl, how) })
		}
	}
}

func killNode(t *testing.T, burl, how string) {
	{
		{
			nodes := threeNodes(t, burl, "-grace", "300ms")
			bal := startLB(t, nodes[0].addr, nodes[1].addr, nodes[2].addr)
			users := []string{"u0", "u1", "u2", "u3"}
			var rs []*recorder
			for i := range 12 {
				rs = append(rs, connect(t, bal.url(), users[i%4], fmt.Sprintf("c%d", i)))
			}
			lonely := connect(t, nodes[2].url(), "z", "z0")
			eventually(t, "z opened", func() bool { return total("chsk/uidport-open z ", nodes...) == 1 })

			const n = 600
			killed := make(chan struct{})
			errs := make(chan error, 1)
			go func() {
				defer close(errs)
				for i := 0; i < n; i += 10 {
					if i == n/2 {
						if how == "kill" {
							nodes[2].kill()
						} else {
							nodes[2].stop()
						}
						lonely.close() // it will not come back
						close(killed)
					}
					for _, u := range users {
						if err := nodes[0].push("user", u, i, 10); err != nil {
							errs <- err
							return
						}
					}
				}
			}()
			for err := range errs {
				t.Fatal(err)
			}
			<-killed
			for i, r := range rs {
				r.expectSeq(t, fmt.Sprintf("c%d of %s", i, users[i%4]), 0, 0, n)
			}
			survivors := nodes[:2]
			eventually(t, "z left presence once", func() bool {
				return total("chsk/client-disconnect z z0", survivors...) == 1 && total("chsk/uidport-close z ", survivors...) == 1
			})
			eventually(t, "users converge", func() bool {
				u, err := nodes[0].users()
				return err == nil && slices.Equal(u, users)
			})
			for _, u := range users {
				if c := total("chsk/uidport-close "+u+" ", survivors...); c != 0 {
					t.Errorf("%s closed %d times though its clients moved; events: %q %q", u, c, survivors[0].events, survivors[1].events)
				}
			}
			for _, r := range rs {
				if st := r.c.State(); st.Lost {
					t.Errorf("a client was told it lost pushes: %+v", st)
				}
			}
		}
	}
}

// privateBroker runs a broker server of its own, which the test may restart.
type privateBroker struct {
	t    *testing.T
	argv []string
	cmd  *exec.Cmd
	url  string
}

func startPrivate(t *testing.T, kind string) *privateBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	b := &privateBroker{t: t}
	prefix := fmt.Sprintf("restart%d", time.Now().UnixNano()%1e9)
	switch kind {
	case "redis":
		bin := testenv.LookPath(t, "redis-server", "apt-get install redis-server")
		// Persistent, as a deployment that must not lose pushes is: a
		// restart keeps the log and its epoch (one without persistence
		// starts another history, and clients are told they lost pushes;
		// the adapter's tests cover that).
		b.argv = []string{bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", t.TempDir()}
		b.url = fmt.Sprintf("redis://127.0.0.1:%d?prefix=%s&node_ttl=4s", port, prefix)
	case "nats":
		bin := testenv.LookPath(t, "nats-server", "apt-get install nats-server")
		dir := filepath.Join(t.TempDir(), "js")
		b.argv = []string{bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", dir}
		b.url = fmt.Sprintf("nats://127.0.0.1:%d?prefix=%s&node_ttl=4s", port, prefix)
	}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *privateBroker) start() {
	b.t.Helper()
	b.cmd = exec.Command(b.argv[0], b.argv[1:]...)
	b.cmd.Stdout, b.cmd.Stderr = nil, nil
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	addr := b.argv[slices.Index(b.argv, "-p")+1]
	if i := slices.Index(b.argv, "--port"); i >= 0 {
		addr = b.argv[i+1]
	}
	eventually(b.t, "broker listening", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (b *privateBroker) stop() {
	if b.cmd != nil && b.cmd.Process != nil {
		b.cmd.Process.Kill()
		b.cmd.Wait()
		b.cmd = nil
	}
}

// TestBrokerRestart: the broker goes away during traffic and comes back.
// Nodes keep serving their connections; pushes made meanwhile are refused
// (and reach no one, unless the broker stored them); once the broker is back the
// cluster carries pushes again and presence is rebuilt, without anyone
// restarting anything. Every push the broker took reaches every client, in
// order, once.
func TestBrokerRestart(t *testing.T) {
	for _, kind := range []string{"redis", "nats"} {
		t.Run(kind, func(t *testing.T) {
			if _, err := exec.LookPath(kind + "-server"); err != nil && os.Getenv(testenv.RequireVar) != "1" {
				t.Skipf("skipped: %s-server is not installed", kind)
			}
			b := startPrivate(t, kind)
			nodes := []*node{startNode(t, "node0", b.url, "-grace", "300ms"), startNode(t, "node1", b.url, "-grace", "300ms")}
			r0 := connect(t, nodes[0].url(), "ann", "a0")
			r1 := connect(t, nodes[1].url(), "ann", "a1")
			eventually(t, "ann listed", func() bool { u, _ := nodes[1].users(); return slices.Equal(u, []string{"ann"}) })

			var (
				mu    sync.Mutex
				acked []int
			)
			pushFrom := func(from, count int) {
				for i := from; i < from+count; i++ {
					if nodes[0].push("user", "ann", i, 1) == nil {
						mu.Lock()
						acked = append(acked, i)
						mu.Unlock()
					}
				}
			}
			pushFrom(0, 100)
			b.stop()
			pushFrom(100, 20) // refused by the broker
			b.start()
			// Recovery: pushes are taken again once the nodes reconnect.
			next := 120
			eventually(t, "pushes taken again", func() bool {
				err := nodes[0].push("user", "ann", next, 1)
				if err == nil {
					mu.Lock()
					acked = append(acked, next)
					mu.Unlock()
				}
				next++
				return err == nil
			})
			pushFrom(next, 100)
			last := next + 99
			eventually(t, "presence rebuilt", func() bool { u, _ := nodes[1].users(); return slices.Equal(u, []string{"ann"}) })

			for i, r := range []*recorder{r0, r1} {
				eventually(t, fmt.Sprintf("a%d got the last push", i), func() bool {
					got := r.received()
					return len(got) > 0 && got[len(got)-1] == last
				})
				got := r.received()
				for j := 1; j < len(got); j++ {
					if got[j] <= got[j-1] {
						t.Fatalf("a%d: out of order or doubled at %d: %v", i, j, got[max(0, j-3):min(len(got), j+3)])
					}
				}
				mu.Lock()
				for _, v := range acked {
					if _, ok := slices.BinarySearch(got, v); !ok {
						t.Errorf("a%d: acknowledged push %d missing", i, v)
					}
				}
				mu.Unlock()
			}
		})
	}
}
