package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/wsasync/wsasync/bench/internal/measure"
)

type meta struct {
	Date      string            `json:"date"`
	CPU       string            `json:"cpu"`
	Cores     int               `json:"cores"`
	Memory    string            `json:"memory"`
	Kernel    string            `json:"kernel"`
	Go        string            `json:"go"`
	Versions  map[string]string `json:"versions"`
	Core      string            `json:"core"` // wsasync commit and state
	Command   string            `json:"command"`
	Elapsed   string            `json:"elapsed"`
	LoadStart string            `json:"load_start"`
	LoadEnd   string            `json:"load_end"`
}

type results struct {
	Config  config                          `json:"config"`
	Meta    meta                            `json:"meta"`
	Values  map[string]map[string][]float64 `json:"values"` // metric → contender → one value per round
	Errors  []string                        `json:"errors,omitempty"`
	Retried int                             `json:"retried"`
}

func (r *results) add(metric, lib string, v float64) {
	if r.Values[metric] == nil {
		r.Values[metric] = map[string][]float64{}
	}
	r.Values[metric][lib] = append(r.Values[metric][lib], v)
}

func (r *results) med(metric, lib string) (float64, bool) {
	vs := r.Values[metric][lib]
	if len(vs) == 0 {
		return 0, false
	}
	return median(vs), true
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func collectMeta(bin string) meta {
	m := meta{Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Versions: map[string]string{}}
	m.CPU, m.Cores, m.Memory, m.Kernel = measure.Host()
	m.Go = runtime.Version()
	if b, err := exec.Command(bin, "-versions").Output(); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			k, v, _ := strings.Cut(l, " ")
			if k == "go" {
				m.Go = v
				continue
			}
			m.Versions[k] = v
		}
	}
	if b, err := exec.Command("git", "-C", "..", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Core = strings.TrimSpace(string(b))
		st, _ := exec.Command("git", "-C", "..", "status", "--porcelain", "--", ".", ":(exclude)bench").Output()
		var dirty []string
		for _, l := range strings.Split(strings.TrimRight(string(st), "\n"), "\n") {
			// Only the files the server is built from: the root package
			// and internal/, without tests.
			f := strings.TrimSpace(l[min(3, len(l)):])
			if strings.HasSuffix(f, ".go") && !strings.HasSuffix(f, "_test.go") && (!strings.Contains(f, "/") || strings.HasPrefix(f, "internal/")) {
				dirty = append(dirty, f)
			}
		}
		if len(dirty) > 0 {
			m.Core += " + uncommitted changes to " + strings.Join(dirty, ", ")
		} else {
			m.Core += " (no uncommitted change to the package benchmarked)"
		}
	}
	return m
}

// A metric is one figure of the report.
type metric struct {
	key    string
	group  string
	name   string
	higher bool // higher is better
	scale  float64
	format string
	chart  string // label in the chart; empty: not charted
}

var metrics = []metric{
	{"echo64.rate", "Echo, 64 B", "msg/s", true, 1, "k", "echo 64 B msg/s"},
	{"echo64.p50", "Echo, 64 B", "p50 µs", false, 1, "%.0f", ""},
	{"echo64.p99", "Echo, 64 B", "p99 µs", false, 1, "%.0f", "echo 64 B p99"},
	{"echo64.cpu", "Echo, 64 B", "server CPU µs/msg", false, 1, "%.2f", "CPU/msg 64 B"},
	{"echo64.allocs", "Echo, 64 B", "allocs/msg", false, 1, "%.3f", "allocs/msg 64 B"},
	{"echo64.reads", "Echo, 64 B", "read syscalls/msg", false, 1, "%.2f", ""},
	{"echo64.writes", "Echo, 64 B", "write syscalls/msg", false, 1, "%.2f", ""},
	{"echo4k.rate", "Echo, 4 KiB", "msg/s", true, 1, "k", "echo 4 KiB msg/s"},
	{"echo4k.p50", "Echo, 4 KiB", "p50 µs", false, 1, "%.0f", ""},
	{"echo4k.p99", "Echo, 4 KiB", "p99 µs", false, 1, "%.0f", "echo 4 KiB p99"},
	{"echo4k.cpu", "Echo, 4 KiB", "server CPU µs/msg", false, 1, "%.2f", "CPU/msg 4 KiB"},
	{"echo4k.allocs", "Echo, 4 KiB", "allocs/msg", false, 1, "%.3f", "allocs/msg 4 KiB"},
	{"echo4k.reads", "Echo, 4 KiB", "read syscalls/msg", false, 1, "%.2f", ""},
	{"echo4k.writes", "Echo, 4 KiB", "write syscalls/msg", false, 1, "%.2f", ""},
	{"idle.rss", "Idle connections", "RSS KiB/conn", false, 1.0 / 1024, "%.1f", "idle RSS/conn"},
	{"idle.heap", "Idle connections", "heap KiB/conn", false, 1.0 / 1024, "%.1f", ""},
	{"idle.stack", "Idle connections", "stacks KiB/conn", false, 1.0 / 1024, "%.1f", ""},
	{"idle.goroutines", "Idle connections", "goroutines/conn", false, 1, "%.2f", ""},
	{"fanout.ms", "Fan-out", "all received, ms", false, 1, "%.1f", "fan-out time"},
	{"fanout.server_ms", "Fan-out", "server's broadcast call, ms", false, 1, "%.1f", ""},
	{"fanout.cpu", "Fan-out", "server CPU ms/broadcast", false, 1, "%.1f", ""},
}

func (m metric) fmt(v float64) string {
	v *= m.scale
	if m.format == "k" {
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2fM", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.0fk", v/1e3)
		}
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf(m.format, v)
}

func better(higher bool) string {
	if higher {
		return "↑"
	}
	return "↓"
}

var peers = []string{"gorilla", "coder", "gws"}
var allPeers = []string{"gorilla", "coder", "gws", "gobwas"}

func writeReport(r *results, path, svgPath, svgName string) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	libs := r.Config.Contenders
	c := r.Config

	p("# wsasync benchmark results\n\n")
	p("Written by `%s` (see [README.md](README.md) for what each figure means and how to read it).\n\n", r.Meta.Command)
	p("| | |\n|---|---|\n")
	p("| date | %s |\n", r.Meta.Date)
	p("| machine | %s, %d cores, %s, %s |\n", r.Meta.CPU, r.Meta.Cores, r.Meta.Memory, r.Meta.Kernel)
	p("| Go | %s |\n", r.Meta.Go)
	p("| wsasync | commit %s |\n", r.Meta.Core)
	var vs []string
	for _, mod := range []string{"github.com/gorilla/websocket", "github.com/coder/websocket", "github.com/lxzan/gws", "github.com/gobwas/ws"} {
		if v, ok := r.Meta.Versions[mod]; ok {
			vs = append(vs, strings.TrimPrefix(mod, "github.com/")+" "+v)
		}
	}
	p("| peers | %s |\n", strings.Join(vs, ", "))
	p("| settings | %d rounds; echo: %d connections × %d in flight, %s warm-up + %s measured; idle and fan-out: %d connections, %d broadcasts per round |\n",
		c.Rounds, c.Conns, c.Inflight, c.Warmup, c.Duration, c.Idle, c.Broadcasts)
	p("| run time | %s (load average %s at the start, %s at the end) |\n\n", r.Meta.Elapsed, r.Meta.LoadStart, r.Meta.LoadEnd)
	p("Each cell is the median over rounds, with the minimum–maximum in brackets. ↑: higher is better; ↓: lower is better. `tcp` is the raw TCP echo of the same frame bytes: the ceiling of this machine, not a contender.\n\n")

	var groups []string
	for _, m := range metrics {
		if !slices.Contains(groups, m.group) {
			groups = append(groups, m.group)
		}
	}
	for _, g := range groups {
		p("### %s\n\n| |", g)
		var ms []metric
		for _, m := range metrics {
			if m.group == g && r.Values[m.key] != nil {
				ms = append(ms, m)
				p(" %s %s |", m.name, better(m.higher))
			}
		}
		if len(ms) == 0 {
			p("\n\n(not run)\n\n")
			continue
		}
		p("\n|---|%s\n", strings.Repeat("---|", len(ms)))
		for _, lib := range libs {
			p("| %s |", lib)
			for _, m := range ms {
				vs := r.Values[m.key][lib]
				if len(vs) == 0 {
					p(" — |")
					continue
				}
				p(" %s (%s–%s) |", m.fmt(median(vs)), m.fmt(slices.Min(vs)), m.fmt(slices.Max(vs)))
			}
			p("\n")
		}
		p("\n")
	}

	p("### Ratios to wsasync\n\nMedian of the contender ÷ median of wsasync. For ↑ figures a ratio above 1 means the contender does better than wsasync; for ↓ figures a ratio above 1 means it does worse. A ratio to an allocation rate under %v per message is left out (—): the tables above give the figures.\n\n| |", noAllocs)
	var charted []metric
	for _, m := range metrics {
		if m.chart != "" && r.Values[m.key] != nil {
			charted = append(charted, m)
			p(" %s %s |", m.chart, better(m.higher))
		}
	}
	p("\n|---|%s\n", strings.Repeat("---|", len(charted)))
	for _, lib := range libs {
		p("| %s |", lib)
		for _, m := range charted {
			p(" %s |", ratioText(r, m, lib))
		}
		p("\n")
	}
	p("\n![ratios to wsasync](%s)\n\n", svgName)

	p("### Targets\n\n| target | measured | met |\n|---|---|---|\n")
	for _, t := range targets(r) {
		p("| %s | %s | %s |\n", t[0], t[1], t[2])
	}
	p("\n")

	p("### Noise\n\nSpread of each figure over the rounds, (max − min) ÷ median, per contender: the median and the largest over the contenders.\n\n| figure | median spread | largest spread |\n|---|---|---|\n")
	for _, m := range metrics {
		var spreads []float64
		worst := ""
		wv := -1.0
		for _, lib := range libs {
			vs := r.Values[m.key][lib]
			if len(vs) < 2 || median(vs) == 0 {
				continue
			}
			s := (slices.Max(vs) - slices.Min(vs)) / math.Abs(median(vs))
			spreads = append(spreads, s)
			if s > wv {
				wv, worst = s, lib
			}
		}
		if len(spreads) == 0 {
			continue
		}
		p("| %s: %s | %.0f%% | %.0f%% (%s) |\n", m.group, m.name, 100*median(spreads), 100*wv, worst)
	}
	p("\nThe machine is shared: before each measurement the driver waits (up to %s) for the CPUs to be idle, and it repeats (up to %d times) a measurement during which other processes used more than %.2f cores; %d measurements were repeated. What other processes used during the kept measurements, in cores:\n\n| window | median | max |\n|---|---|---|\n",
		r.Config.QuietWait, r.Config.Retries, r.Config.MaxForeign, r.Retried)
	for _, k := range []string{"echo64.foreign", "echo4k.foreign", "fanout.foreign"} {
		var all []float64
		for _, vs := range r.Values[k] {
			all = append(all, vs...)
		}
		if len(all) > 0 {
			p("| %s | %.2f | %.2f |\n", strings.TrimSuffix(k, ".foreign"), median(all), slices.Max(all))
		}
	}
	p("\n")
	if len(r.Errors) > 0 {
		p("### Failures\n\n")
		for _, e := range r.Errors {
			p("- %s\n", e)
		}
		p("\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(svgPath, []byte(chart(r, charted)), 0o644)
}

// noAllocs is the allocation rate below which a ratio to it says nothing:
// pool refills after a GC cycle, not a cost per message.
const noAllocs = 0.01

func ratio(r *results, m metric, lib string) (float64, bool) {
	v, ok1 := r.med(m.key, lib)
	w, ok2 := r.med(m.key, "wsasync")
	if !ok1 || !ok2 || w == 0 || (strings.HasSuffix(m.key, ".allocs") && w < noAllocs) {
		return 0, false
	}
	return v / w, true
}

func ratioText(r *results, m metric, lib string) string {
	q, ok := ratio(r, m, lib)
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.2f", q)
}

// targets checks the project's goals for wsasync against the figures.
func targets(r *results) [][3]string {
	var out [][3]string
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "**no**"
	}
	best := func(key string, libs []string, higher bool) (string, float64) {
		bl, bv := "", math.NaN()
		for _, l := range libs {
			v, ok := r.med(key, l)
			if !ok {
				continue
			}
			if math.IsNaN(bv) || (higher && v > bv) || (!higher && v < bv) {
				bl, bv = l, v
			}
		}
		return bl, bv
	}
	// overlap says when the min–max ranges over the rounds of wsasync and
	// of the peer overlap: the medians' order is then not a clear result.
	overlap := func(key, peer string) string {
		a, b := r.Values[key]["wsasync"], r.Values[key][peer]
		if len(a) < 2 || len(b) < 2 {
			return ""
		}
		if slices.Min(a) <= slices.Max(b) && slices.Min(b) <= slices.Max(a) {
			return " (ranges over the rounds overlap)"
		}
		return ""
	}
	// against is the verdict on a target met against a peer: a lead whose
	// rounds overlap the peer's is not claimed.
	against := func(met bool, key, peer string) string {
		if met && overlap(key, peer) != "" {
			return "tie (within the rounds' spread)"
		}
		return yes(met)
	}
	for _, w := range []struct{ key, name string }{{"echo64.rate", "64 B"}, {"echo4k.rate", "4 KiB"}} {
		ws, ok := r.med(w.key, "wsasync")
		if !ok {
			continue
		}
		bl, bv := best(w.key, peers, true)
		if bl != "" {
			q := ws / bv
			out = append(out, [3]string{fmt.Sprintf("echo %s throughput ≥ 1.0× the best of gorilla/coder/gws", w.name), fmt.Sprintf("%.2f× %s%s", q, bl, overlap(w.key, bl)), against(q >= 1.0, w.key, bl)})
		}
		if g, ok := r.med(w.key, "gorilla"); ok {
			q := ws / g
			out = append(out, [3]string{fmt.Sprintf("echo %s throughput, aim 1.2× gorilla", w.name), fmt.Sprintf("%.2f× gorilla%s", q, overlap(w.key, "gorilla")), against(q >= 1.2, w.key, "gorilla")})
		}
	}
	for _, w := range []struct{ key, name string }{{"echo64.cpu", "64 B"}, {"echo4k.cpu", "4 KiB"}} {
		ws, ok := r.med(w.key, "wsasync")
		if !ok {
			continue
		}
		if bl, bv := best(w.key, peers, false); bl != "" {
			q := bv / ws
			out = append(out, [3]string{fmt.Sprintf("(proxy, less sensitive to background load) echo %s server CPU per message ≤ the best of gorilla/coder/gws", w.name),
				fmt.Sprintf("%.2f µs vs %.2f µs (%s): %.2f× as efficient%s", ws, bv, bl, q, overlap(w.key, bl)), against(q >= 1.0, w.key, bl)})
		}
	}
	for _, w := range []struct{ key, name string }{{"echo64.allocs", "64 B"}, {"echo4k.allocs", "4 KiB"}} {
		if v, ok := r.med(w.key, "wsasync"); ok {
			out = append(out, [3]string{fmt.Sprintf("≤ 1 allocation per echoed message on the server (%s)", w.name), fmt.Sprintf("%.3f", v), yes(v <= 1.0)})
		}
	}
	if v, ok := r.med("idle.rss", "wsasync"); ok {
		out = append(out, [3]string{"idle memory ≤ 10 KiB per connection (RSS)", fmt.Sprintf("%.1f KiB", v/1024), yes(v <= 10*1024)})
	}
	if v, ok := r.med("fanout.ms", "wsasync"); ok {
		bl, bv := best("fanout.ms", allPeers, false)
		if bl != "" {
			out = append(out, [3]string{"fan-out faster than every peer", fmt.Sprintf("%.1f ms vs %.1f ms (%s)%s", v, bv, bl, overlap("fanout.ms", bl)), against(v < bv, "fanout.ms", bl)})
		}
	}
	return out
}

var colors = map[string]string{
	"wsasync": "#1f77b4", "gorilla": "#ff7f0e", "coder": "#2ca02c", "gws": "#d62728", "gobwas": "#9467bd", "tcp": "#7f7f7f",
}

// chart draws the ratios to wsasync as grouped bars on a log scale, by hand.
func chart(r *results, ms []metric) string {
	libs := r.Config.Contenders
	const (
		left, right, top, bottom = 60.0, 20.0, 60.0, 90.0
		barW, gap                = 14.0, 22.0
		plotH                    = 300.0
		lo, hi                   = -4.0, 4.0 // log2 of the ratio range: 1/16 … 16
	)
	groupW := float64(len(libs))*barW + gap
	width := left + right + groupW*float64(len(ms))
	height := top + plotH + bottom
	y := func(q float64) float64 {
		l := math.Log2(q)
		l = math.Max(lo, math.Min(hi, l))
		return top + (hi-l)/(hi-lo)*plotH
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="%.0f" y="18" font-size="14" font-weight="bold">Ratio to wsasync (median over %d rounds, log scale; wsasync = 1)</text>`+"\n", left, r.Config.Rounds)
	// legend
	x := left
	for _, lib := range libs {
		p(`<rect x="%.0f" y="30" width="12" height="12" fill="%s"/><text x="%.0f" y="40">%s</text>`+"\n", x, colors[lib], x+16, xmlEscape(lib))
		x += 16 + 7*float64(len(lib)) + 18
	}
	// grid
	for l := lo; l <= hi; l++ {
		q := math.Pow(2, l)
		yy := y(q)
		stroke, sw := "#ddd", 1.0
		if l == 0 {
			stroke, sw = "#000", 1.5
		}
		p(`<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"/>`+"\n", left, width-right, yy, yy, stroke, sw)
		label := fmt.Sprintf("%g", q)
		if q < 1 {
			label = fmt.Sprintf("1/%g", 1/q)
		}
		p(`<text x="%.0f" y="%.1f" text-anchor="end">%s×</text>`+"\n", left-6, yy+4, label)
	}
	for gi, m := range ms {
		gx := left + float64(gi)*groupW + gap/2
		for li, lib := range libs {
			q, ok := ratio(r, m, lib)
			bx := gx + float64(li)*barW
			if !ok {
				continue
			}
			y1 := y(1)
			yq := y(math.Max(q, 1e-9))
			if q == 0 {
				yq = y(math.Pow(2, lo))
			}
			ytop, h := math.Min(y1, yq), math.Abs(y1-yq)
			if h < 1.5 {
				ytop, h = y1-0.75, 1.5
			}
			p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %.2f× wsasync</title></rect>`+"\n",
				bx, ytop, barW-2, h, colors[lib], xmlEscape(lib), xmlEscape(m.chart), q)
			if vs := r.Values[m.key][lib]; len(vs) > 1 {
				w, _ := r.med(m.key, "wsasync")
				lo, hi := slices.Min(vs)/w, slices.Max(vs)/w
				if lo > 0 {
					cx := bx + barW/2 - 1
					p(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#333" stroke-width="1"/>`+"\n", cx, cx, y(lo), y(hi))
				}
			}
			if q >= 16 || q <= 1.0/16 {
				ly := yq - 3
				if q < 1 {
					ly = yq + 10
				}
				p(`<text x="%.1f" y="%.1f" text-anchor="middle" font-size="8">%.2g</text>`+"\n", bx+barW/2-1, ly, q)
			}
		}
		cx := gx + float64(len(libs))*barW/2
		p(`<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", cx, top+plotH+28, xmlEscape(m.chart))
		word := "lower is better"
		if m.higher {
			word = "higher is better"
		}
		p(`<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%s %s</text>`+"\n", cx, top+plotH+42, better(m.higher), word)
	}
	p(`<text x="%.0f" y="%.0f" fill="#555">Bars above the line: the figure is larger than wsasync's; whether that is good depends on the arrow. Whiskers: the contender's min–max over the rounds ÷ wsasync's median. %s</text>`+"\n", left, height-20, xmlEscape(r.Meta.Date))
	p("</svg>\n")
	return b.String()
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
