package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type crossPart struct {
	Meta   meta         `json:"meta"`
	Result *crossResult `json:"result"`
}

type soakPart struct {
	Meta   meta        `json:"meta"`
	Result *soakResult `json:"result"`
}

// report is results-cluster.json: the last run of each part.
type report struct {
	Cross *crossPart           `json:"cross,omitempty"`
	Soak  map[string]*soakPart `json:"soak,omitempty"`
}

const (
	markBegin = "<!-- cmd/cluster: begin (written by go run ./cmd/cluster; do not edit) -->"
	markEnd   = "<!-- cmd/cluster: end -->"
)

func writeReports(r *report, out, summary string) error {
	if err := os.WriteFile(out, []byte(fullReport(r)), 0o644); err != nil {
		return err
	}
	if summary == "" {
		return nil
	}
	rel, err := filepath.Rel(filepath.Dir(summary), out)
	if err != nil {
		rel = out
	}
	section := markBegin + "\n" + summarySection(r, rel) + markEnd + "\n"
	old, err := os.ReadFile(summary)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	if i := strings.Index(s, markBegin); i >= 0 {
		j := strings.Index(s[i:], markEnd)
		if j < 0 {
			return fmt.Errorf("%s: %q without %q", summary, markBegin, markEnd)
		}
		s = s[:i] + section + strings.TrimPrefix(s[i+j+len(markEnd):], "\n")
	} else {
		if s != "" && !strings.HasSuffix(s, "\n\n") {
			s = strings.TrimRight(s, "\n") + "\n\n"
		}
		s += section
	}
	return os.WriteFile(summary, []byte(s), 0o644)
}

func metaTable(b *strings.Builder, m meta) {
	fmt.Fprintf(b, "| | |\n|---|---|\n")
	fmt.Fprintf(b, "| date | %s |\n", m.Date)
	fmt.Fprintf(b, "| machine | %s, %d cores, %s, %s |\n", m.CPU, m.Cores, m.Memory, m.Kernel)
	fmt.Fprintf(b, "| Go | %s |\n", m.Go)
	fmt.Fprintf(b, "| brokers | %s; %s |\n", m.Redis, m.NATS)
	fmt.Fprintf(b, "| source | commit %s |\n", m.Commit)
	fmt.Fprintf(b, "| command | `%s` |\n", m.Command)
	fmt.Fprintf(b, "| run time | %s (load average %s at the start, %s at the end) |\n\n", m.Elapsed, m.LoadStart, m.LoadEnd)
}

func rng(v [3]float64, f string) string {
	return fmt.Sprintf(f+" ("+f+"–"+f+")", v[0], v[1], v[2])
}

func kilo(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.0fk", v/1000)
	}
	return fmt.Sprintf("%.1fk", v/1000)
}

func rngK(v [3]float64) string {
	return fmt.Sprintf("%s (%s–%s)", kilo(v[0]), kilo(v[1]), kilo(v[2]))
}

func crossTable(b *strings.Builder, c *crossResult, detail bool) {
	var mem crossSummary
	memOK := false
	if s, ok := summarize(c.Runs, "memory"); ok {
		mem, memOK = s, true
	}
	fmt.Fprintf(b, "| configuration | nodes | deliveries/s ↑ | ratio to one in-memory node ↑ | p50 latency ms ↓ | p99 latency ms ↓ |")
	if detail {
		fmt.Fprintf(b, " all delivered after, s | cores: clients / nodes / broker | CPU µs per delivery: nodes / everything ↓ | other processes, cores (max) | missing/doubled/out of order | reconnects | clients dropped as too slow |")
	}
	fmt.Fprintf(b, "\n|---|---|---|---|---|---|")
	if detail {
		fmt.Fprintf(b, "---|---|---|---|---|---|---|")
	}
	fmt.Fprintln(b)
	for _, name := range c.Config.Configs {
		s, ok := summarize(c.Runs, name)
		if !ok {
			fmt.Fprintf(b, "| %s | | no measurement | | | |\n", label(name))
			continue
		}
		ratio := "—"
		if memOK && name != "memory" {
			ratio = fmt.Sprintf("%.2f× (%.2f–%.2f)", s.Rate[0]/mem.Rate[0], s.Rate[1]/mem.Rate[0], s.Rate[2]/mem.Rate[0])
		} else if name == "memory" {
			ratio = "1"
		}
		nodes := 3
		if name == "memory" {
			nodes = 1
		}
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s |", label(name), nodes, rngK(s.Rate), ratio, rng(s.P50, "%.1f"), rng(s.P99, "%.1f"))
		if detail {
			perDelivery := func(cores float64) float64 { return cores / s.Rate[0] * 1e6 }
			fmt.Fprintf(b, " %s | %.2f / %.2f / %.2f | %.1f / %.1f | %.2f | %d | %d | %d |", rng(s.Secs, "%.2f"), s.CPUBench, s.CPUNodes, s.CPUBroker,
				perDelivery(s.CPUNodes), perDelivery(s.CPUBench+s.CPUNodes+s.CPUBroker), s.Foreign, s.Bad, s.Reconnects, s.TooSlow)
		}
		fmt.Fprintln(b)
	}
	fmt.Fprintln(b)
}

func label(name string) string {
	switch name {
	case "memory":
		return "one node, in-memory broker"
	case "redis":
		return "three nodes, Redis"
	case "nats":
		return "three nodes, NATS"
	}
	return name
}

func targets(c *crossResult) []string {
	mem, ok := summarize(c.Runs, "memory")
	if !ok {
		return nil
	}
	var out []string
	for _, name := range c.Config.Configs {
		if name == "memory" {
			continue
		}
		s, ok := summarize(c.Runs, name)
		if !ok {
			out = append(out, fmt.Sprintf("%s: no measurement", label(name)))
			continue
		}
		r := s.Rate[0] / mem.Rate[0]
		verdict := "met"
		if r < 0.5 {
			verdict = "**not met**"
		}
		overlap := ""
		if s.Rate[2]/mem.Rate[0] >= 0.5 && s.Rate[1]/mem.Rate[0] < 0.5 {
			overlap = " (the range straddles 0.5×)"
		}
		out = append(out, fmt.Sprintf("%s: %.2f× ≥ 0.5×: %s%s", label(name), r, verdict, overlap))
	}
	return out
}

func soakRows() []struct {
	name string
	f    func(*soakResult) string
} {
	d := func(v int) string { return fmt.Sprint(v) }
	return []struct {
		name string
		f    func(*soakResult) string
	}{
		{"pushes asked for (rate × duration)", func(r *soakResult) string {
			return fmt.Sprintf("%d (%d)", r.Attempted, int(float64(r.Config.Rate)*r.Config.Duration.Seconds()))
		}},
		{"**acknowledged** (/push answered 200)", func(r *soakResult) string { return d(r.Acked) }},
		{"refused with 503 (broker away)", func(r *soakResult) string { return d(r.Refused503) }},
		{"no answer / other status", func(r *soakResult) string { return d(r.Failed) }},
		{"received at the clients", func(r *soakResult) string { return d(r.Received) }},
		{"**lost** (acknowledged, never received)", func(r *soakResult) string {
			return fmt.Sprintf("%d (%d users)", r.Lost, r.LostUsers)
		}},
		{"… of which silent (the client was never told `Lost`)", func(r *soakResult) string { return d(r.LostSilent) }},
		{"**duplicated** (an acknowledged push received more than once)", func(r *soakResult) string { return d(r.Duplicated) }},
		{"**out of order**", func(r *soakResult) string { return d(r.OutOfOrder) }},
		{"received though not acknowledged", func(r *soakResult) string { return d(r.UnackedRecvd) }},
		{"… received twice", func(r *soakResult) string { return d(r.DupUnacked) }},
		{"clients told `Lost` (State().Lost at some open)", func(r *soakResult) string { return d(r.ToldLost) }},
		{"… and still at the end", func(r *soakResult) string { return d(r.ToldLostAtEnd) }},
		{"reconnects (opens after the first, all clients)", func(r *soakResult) string { return d(r.Reconnects) }},
		{"… of which after the broker was killed", func(r *soakResult) string { return d(r.ReconnOutage) }},
		{"clients on the killed node", func(r *soakResult) string { return d(r.KilledClients) }},
		{"kill → every client open again, s", func(r *soakResult) string { return secs(r.KillBackSecs) }},
		{"of which reconnected 1 / 2 / 5 / 10 / 20 s after the kill", func(r *soakResult) string {
			var parts []string
			for _, m := range r.BackAfter {
				parts = append(parts, fmt.Sprint(m.Back))
			}
			return strings.Join(parts, " / ")
		}},
		{"broker down, s", func(r *soakResult) string { return secs(r.OutageSecs) }},
		{"broker back → first push acknowledged, s", func(r *soakResult) string { return secs(r.AckAgainSecs) }},
		{"delivery latency p50 / p99 / max, ms", func(r *soakResult) string {
			return fmt.Sprintf("%.1f / %.0f / %.0f", r.P50ms, r.P99ms, r.Maxms)
		}},
		{"users listed at the end (want all)", func(r *soakResult) string { return d(r.UsersAtEnd) }},
		{"user closes reported by the surviving nodes", func(r *soakResult) string { return d(r.UserCloses) }},
		{"user opens / closes reported after the node kill, after the broker kill", func(r *soakResult) string {
			return fmt.Sprintf("%d / %d, %d / %d", r.UserOpensByPhase[1], r.UserClosesByPhase[1], r.UserOpensByPhase[2], r.UserClosesByPhase[2])
		}},
		{"clients not open at the end", func(r *soakResult) string { return d(r.NotOpenAtEnd) }},
		{"connecting every client, s", func(r *soakResult) string { return secs(r.ConnectSecs) }},
		{"drain after the last push, s", func(r *soakResult) string { return secs(r.DrainSecs) }},
		{"warning/error lines logged by the nodes", func(r *soakResult) string { return d(r.NodeLogs) }},
		{"cores used while pushing: bench (clients) / balancers / nodes / broker / other processes", func(r *soakResult) string {
			return fmt.Sprintf("%.2f / %.2f / %.2f / %.2f / %.2f", r.CPU["bench"], r.CPU["balancers"], r.CPU["nodes"], r.CPU["broker"], r.CPU["other processes"])
		}},
	}
}

func secs(v float64) string {
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", v)
}

var soakOrder = []string{"redis", "nats"}

func soakTable(b *strings.Builder, soak map[string]*soakPart, rows int) {
	var kinds []string
	for _, k := range soakOrder {
		if soak[k] != nil {
			kinds = append(kinds, k)
		}
	}
	fmt.Fprintf(b, "| |")
	for _, k := range kinds {
		r := soak[k].Result
		fmt.Fprintf(b, " %s (%d clients, %v) |", map[string]string{"redis": "Redis", "nats": "NATS"}[k], r.Config.Clients, r.Config.Duration)
	}
	fmt.Fprintf(b, "\n|---|%s\n", strings.Repeat("---|", len(kinds)))
	for i, row := range soakRows() {
		if rows > 0 && i >= rows {
			break
		}
		fmt.Fprintf(b, "| %s |", row.name)
		for _, k := range kinds {
			fmt.Fprintf(b, " %s |", row.f(soak[k].Result))
		}
		fmt.Fprintln(b)
	}
	fmt.Fprintln(b)
}

func fullReport(r *report) string {
	var b strings.Builder
	b.WriteString("# Sente scale-out results\n\n")
	b.WriteString("Written by `go run ./cmd/cluster` (see [README.md](README.md#cluster-scale-out) for what runs and how to read it). ")
	b.WriteString("The nodes are `broker/cluster/cmd/node` processes built without `-race`; the clients are `sente.Client`s in the bench process.\n\n")

	b.WriteString("## Cross-node pushes\n\n")
	if r.Cross == nil {
		b.WriteString("Not run yet (`go run ./cmd/cluster -parts cross`).\n\n")
	} else {
		c := r.Cross.Result
		metaTable(&b, r.Cross.Meta)
		cfg := c.Config
		fmt.Fprintf(&b, "%d users, one client each, spread evenly over the nodes. Each of three pushers (one per node; with one node, three on it) pushes %d stamped integers to every user (one `/push` call with %d `to`, `par=%d`, the three at once), so %s deliveries per push phase, two thirds of them crossing nodes when there are three. ",
			cfg.Users, cfg.K, cfg.Users, cfg.Par, commas(3*cfg.Users*cfg.K))
		fmt.Fprintf(&b, "A measurement repeats the push phase, the integers going on, until its measured time adds up to %v (one phase takes Redis and NATS longer than that; the in-memory node needs several). ", cfg.MinWindow)
		fmt.Fprintf(&b, "Rate: deliveries ÷ time from the start of each phase until every client has everything, summed over the phases. Latency: client receive time − the stamp taken when the node called `Push`, over every delivery; the pushers push as fast as they can, so it is latency at saturation (it includes the 30 ms send window and the wait behind earlier pushes). ")
		fmt.Fprintf(&b, "%d rounds, the configurations interleaved (the first rotating); each cell is the median with the minimum–maximum over the rounds. Every measurement starts fresh nodes and, for Redis and NATS, a prefix of its own on the shared server (%s, %s), deleted afterwards.\n\n",
			cfg.Rounds, cfg.Redis, cfg.NATS)
		crossTable(&b, c, true)
		if t := targets(c); len(t) > 0 {
			b.WriteString("**Target** (cluster throughput ≥ 0.5× one in-memory node): " + strings.Join(t, "; ") + ".\n\n")
		}
		b.WriteString("<details><summary>Every measurement</summary>\n\n")
		b.WriteString("| round | configuration | deliveries/s | phases | s | /push answered after, s | p50 ms | p99 ms | max ms | cores: clients / nodes / broker | other processes, cores | tries |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, m := range c.Runs {
			fmt.Fprintf(&b, "| %d | %s | %.0f | %d | %.2f | %.2f | %.1f | %.1f | %.0f | %.2f / %.2f / %.2f | %.2f | %d |\n", m.Round, m.Config, m.Rate, m.Reps, m.Seconds, m.PushSecs, m.P50ms, m.P99ms, m.Maxms, m.CPUBench, m.CPUNodes, m.CPUBroker, m.Foreign, m.Tries)
		}
		b.WriteString("\n</details>\n\n")
		if len(c.Errors) > 0 {
			b.WriteString("Failed measurements:\n\n")
			for _, e := range c.Errors {
				fmt.Fprintf(&b, "- %s\n", e)
			}
			b.WriteString("\n")
		}
	}

	b.WriteString("## Soak: a node killed, the broker restarted\n\n")
	if len(r.Soak) == 0 {
		b.WriteString("Not run yet (`go run ./cmd/cluster -parts soak-redis,soak-nats`).\n\n")
	} else {
		for _, k := range soakOrder {
			if p := r.Soak[k]; p != nil {
				fmt.Fprintf(&b, "### %s run\n\n", map[string]string{"redis": "Redis", "nats": "NATS"}[k])
				metaTable(&b, p.Meta)
			}
		}
		var any *soakResult
		for _, k := range soakOrder {
			if p := r.Soak[k]; p != nil {
				any = p.Result
				break
			}
		}
		cfg := any.Config
		fmt.Fprintf(&b, "### Figures\n\n")
		fmt.Fprintf(&b, "%s clients (users u0…, one client each) connect through %d TCP load balancer processes without sticky sessions, each over the same three nodes; the broker is a server of the run's own (redis-server with `--save \"\" --appendonly no`, so a restart loses the log; nats-server `-js` with its own store directory, which survives). ",
			commas(cfg.Clients), cfg.LBs)
		fmt.Fprintf(&b, "For %v, three pushers (pusher k owns the users i with i mod 3 = k and pushes through node k, or the next live node) push numbered rounds to their users at %s pushes/s in all, %d users per `/push` call (`count=1`, stamped): a call answered 200 acknowledges its %d pushes, any other outcome none. ", cfg.Duration, commas(cfg.Rate), cfg.Batch, cfg.Batch)
		fmt.Fprintf(&b, "At a third of the time node 2 is killed with SIGKILL (its clients reconnect through the balancers to the others and resume from their positions); at two thirds (or once every client is open again, if later) the broker server is killed with SIGKILL and started again on the same port %v later. Clients: MinBackoff %v, MaxBackoff %v. After the last push the run waits until every acknowledged push has arrived (or nothing more arrives for 30 s).\n\n", cfg.Outage, cfg.MinBackoff, cfg.MaxBackoff)
		soakTable(&b, r.Soak, 0)
		for _, k := range soakOrder {
			p := r.Soak[k]
			if p == nil {
				continue
			}
			if len(p.Result.Errors) > 0 {
				fmt.Fprintf(&b, "%s problems:\n\n", k)
				for _, e := range p.Result.Errors {
					fmt.Fprintf(&b, "- %s\n", e)
				}
				b.WriteString("\n")
			}
			if len(p.Result.OrderDetail) > 0 {
				fmt.Fprintf(&b, "%s: users that got a push twice or out of order (the first %d):\n\n```\n%s\n```\n\n", k, len(p.Result.OrderDetail), strings.Join(p.Result.OrderDetail, "\n\n"))
			}
			if len(p.Result.SilentDetail) > 0 {
				fmt.Fprintf(&b, "%s: users that lost acknowledged pushes without being told `Lost` (the first %d):\n\n```\n%s\n```\n\n", k, len(p.Result.SilentDetail), strings.Join(p.Result.SilentDetail, "\n\n"))
			}
			if len(p.Result.MissingUsers) > 0 {
				fmt.Fprintf(&b, "%s: %d users had their client open at the end but were not listed by `/users` (%s); the presence events the nodes printed for the first of them (s since the soak began; node 2 killed at %.1f s, the broker at %.1f s):\n\n```\n%s\n```\n\n",
					k, len(p.Result.MissingUsers), strings.Join(p.Result.MissingUsers[:min(10, len(p.Result.MissingUsers))], ", "), p.Result.KillAtSecs, p.Result.BrokerKillAtSecs, strings.Join(p.Result.MissingDetail, "\n"))
			}
			if len(p.Result.NodeLogKinds) > 0 {
				type kc struct {
					k string
					c int
				}
				var kinds []kc
				for k, c := range p.Result.NodeLogKinds {
					kinds = append(kinds, kc{k, c})
				}
				sort.Slice(kinds, func(i, j int) bool {
					return kinds[i].c > kinds[j].c || kinds[i].c == kinds[j].c && kinds[i].k < kinds[j].k
				})
				fmt.Fprintf(&b, "What the nodes logged (%s; digits replaced by N), with the first line of each kind:\n\n| lines | message | first |\n|---|---|---|\n", k)
				for i, x := range kinds {
					if i == 10 {
						fmt.Fprintf(&b, "| … | %d more kinds | |\n", len(kinds)-10)
						break
					}
					ex := p.Result.NodeLogExample[x.k]
					if len(ex) > 300 {
						ex = ex[:300] + "…"
					}
					fmt.Fprintf(&b, "| %d | `%s` | `%s` |\n", x.c, strings.ReplaceAll(x.k, "|", "\\|"), strings.ReplaceAll(ex, "|", "\\|"))
				}
				b.WriteString("\n")
			}
		}
	}
	b.WriteString("## Descriptors\n\n")
	b.WriteString("RLIMIT_NOFILE is 20,000 (hard) on this machine; the command raises its soft limit to the hard one. A proxied connection costs a load balancer two descriptors, so one balancer for 10,000 clients would need 20,000 descriptors by itself, and 30,000 inside the bench process next to the clients' 10,000. So the balancers are separate processes (this binary re-executed with `-lb-child`), as many as keep each under 80 % of the limit: two for 10,000 clients, about 10,000 descriptors each. The bench process holds the 10,000 client sockets plus a few control connections; each node at most about 5,000 client sockets after the kill.\n")
	return b.String()
}

func summarySection(r *report, link string) string {
	var b strings.Builder
	b.WriteString("### Cluster: scale-out over Redis and NATS\n\n")
	fmt.Fprintf(&b, "Written by `go run ./cmd/cluster`; the details, settings and machine are in [%s](%s).\n\n", link, link)
	if r.Cross != nil {
		fmt.Fprintf(&b, "Cross-node pushes (%s, %d users, %d rounds):\n\n", r.Cross.Meta.Date, r.Cross.Result.Config.Users, r.Cross.Result.Config.Rounds)
		crossTable(&b, r.Cross.Result, false)
		if t := targets(r.Cross.Result); len(t) > 0 {
			b.WriteString("Target ≥ 0.5×: " + strings.Join(t, "; ") + ".\n\n")
		}
	}
	if len(r.Soak) > 0 {
		b.WriteString("Soak (a node killed with SIGKILL, the broker restarted):\n\n")
		soakTable(&b, r.Soak, 13)
	}
	return b.String()
}

func commas(n int) string {
	s := fmt.Sprint(n)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

var _ = time.Second
