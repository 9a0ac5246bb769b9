package bench

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SchemaID names the report format; bench/schema.json describes it.
const SchemaID = "https://github.com/pubg1/pubg1/bench/schema.json#v1"

// Schema is the JSON schema of a Report.
//
//go:embed schema.json
var Schema []byte

// Report is the result of one run, as written to JSON.
type Report struct {
	Schema       string            `json:"schema"`
	RunID        string            `json:"run_id"`
	Preset       string            `json:"preset,omitempty"`
	Topic        string            `json:"topic"`
	Group        string            `json:"group"`
	Started      time.Time         `json:"started"`
	MeasuredFrom time.Time         `json:"measured_from"`
	Ended        time.Time         `json:"ended"`
	Workload     Workload          `json:"workload"`
	Cluster      *ClusterSettings  `json:"cluster,omitempty"`
	Target       Target            `json:"target"`
	StartOffsets map[int32]int64   `json:"start_offsets"`
	Replicas     map[int32][]int32 `json:"replicas,omitempty"`
	Summary      Summary           `json:"summary"`
	Series       []SecondStats     `json:"series"`
	Faults       []FaultReport     `json:"faults"`
	Audit        AuditResult       `json:"audit"`
	Drained      bool              `json:"drained"`
	Backlog      *BacklogResult    `json:"backlog,omitempty"`
	Search       *SearchResult     `json:"search,omitempty"`
	Limits       *Limits           `json:"limits,omitempty"`
	OfLimits     *OfLimits         `json:"of_limits,omitempty"`
	Notes        []string          `json:"notes,omitempty"`
}

// ClusterSettings describes a local cluster the runner started.
type ClusterSettings struct {
	Brokers int      `json:"brokers"`
	DataDir string   `json:"data_dir"`
	Netns   bool     `json:"netns"`
	Faults  []Fault  `json:"faults,omitempty"`
	Chaos   bool     `json:"chaos"`
	Seed    int64    `json:"seed"`
	Args    []string `json:"args,omitempty"`
}

// LatencyStats are latency figures in milliseconds.
type LatencyStats struct {
	Count int64   `json:"count"`
	Avg   float64 `json:"avg_ms"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary is the whole run's figures. Throughput and latencies cover the
// measured phase (after the warm-up); counts cover the whole run.
type Summary struct {
	Sent             int64            `json:"sent"`
	Acked            int64            `json:"acked"`
	Failed           int64            `json:"failed"`
	Consumed         int64            `json:"consumed"`
	Foreign          int64            `json:"foreign"`
	ProducedSeconds  float64          `json:"produced_seconds"`
	MeasuredSeconds  float64          `json:"measured_seconds"`
	RecordsPerSec    float64          `json:"records_per_sec"`
	MBPerSec         float64          `json:"mb_per_sec"`
	ConsumedPerSec   float64          `json:"consumed_per_sec"`
	Publish          LatencyStats     `json:"publish_latency"`
	EndToEnd         LatencyStats     `json:"end_to_end_latency"`
	Errors           map[string]int64 `json:"errors"`
	ConsumerLagAtEnd int64            `json:"consumer_lag_at_end"`
}

// SecondStats is one second of the run (T seconds after the measured
// phase started, warm-up included): records sent (by scheduled time),
// acknowledged and consumed, errors, and the latencies of the records
// acknowledged or consumed in that second.
type SecondStats struct {
	T        int          `json:"t"`
	Sent     int64        `json:"sent"`
	Acked    int64        `json:"acked"`
	Consumed int64        `json:"consumed"`
	Errors   int64        `json:"errors"`
	MBPerSec float64      `json:"mb_per_sec"`
	Publish  LatencyStats `json:"publish_latency"`
	EndToEnd LatencyStats `json:"end_to_end_latency"`
}

// BacklogResult is the backlog phase: how long building the unread
// backlog took and how fast the consumers drained it while the producers
// continued.
type BacklogResult struct {
	TargetBytes        int64         `json:"target_bytes"`
	Bytes              int64         `json:"bytes"`
	Records            int64         `json:"records"`
	BuiltAfter         time.Duration `json:"built_after_ns"`
	DrainedAfter       time.Duration `json:"drained_after_ns"`
	DrainRecordsPerSec float64       `json:"drain_records_per_sec"`
	DrainMBPerSec      float64       `json:"drain_mb_per_sec"`
	Complete           bool          `json:"complete"`
}

// OfLimits relates a run to the machine's ceilings: the payload written to
// the disk (MB/s times the replication factor, as when every replica
// shares the measured disk, which is true of a local cluster) and the
// payload sent over loopback, as percentages.
type OfLimits struct {
	DiskPercent     float64 `json:"disk_percent"`
	LoopbackPercent float64 `json:"loopback_percent"`
}

func percentOfLimits(rep *Report, l *Limits) *OfLimits {
	rf := float64(rep.Workload.Replication)
	if rf < 1 {
		rf = 1
	}
	o := &OfLimits{}
	if l.DiskMBPerSec > 0 {
		o.DiskPercent = rep.Summary.MBPerSec * rf / l.DiskMBPerSec * 100
	}
	if l.LoopbackMBPerSec > 0 {
		o.LoopbackPercent = rep.Summary.MBPerSec / l.LoopbackMBPerSec * 100
	}
	return o
}

// Software is the system under test, when known.
type Software struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// LocalSoftware is this binary's PubG1 version, for a cluster started from
// it.
func LocalSoftware() *Software {
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v += " " + s.Value
			}
		}
	}
	return &Software{Name: "pubg1", Version: v}
}

// Target is what the run ran against. The Kafka protocol does not say
// which software answers, so unless the runner started the cluster itself
// Software is "unknown"; the cluster ID, brokers, the API versions table
// (and its hash) and franz-go's guess of the Kafka version it matches
// identify it as far as the wire allows.
type Target struct {
	Bootstrap         []string `json:"bootstrap"`
	Label             string   `json:"label,omitempty"`
	Software          string   `json:"software"`
	Version           string   `json:"version,omitempty"`
	ClusterID         string   `json:"cluster_id"`
	Controller        int32    `json:"controller"`
	Brokers           []int32  `json:"brokers"`
	KafkaVersionGuess string   `json:"kafka_version_guess"`
	APIVersionsSHA256 string   `json:"api_versions_sha256"`
	APIVersions       []string `json:"api_versions"`
	Note              string   `json:"note,omitempty"`
}

// describeTarget asks the cluster what it can say about itself.
func describeTarget(ctx context.Context, adm *kadm.Client, w *Workload, sw *Software) Target {
	t := Target{Bootstrap: w.Brokers, Label: w.Label, Software: "unknown", Controller: -1,
		Note: "the Kafka protocol does not name the broker software; see the API versions table and its hash"}
	if sw != nil {
		t.Software, t.Version, t.Note = sw.Name, sw.Version, ""
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if md, err := adm.BrokerMetadata(ctx); err == nil {
		t.ClusterID, t.Controller = md.Cluster, md.Controller
		for _, b := range md.Brokers {
			t.Brokers = append(t.Brokers, b.NodeID)
		}
	}
	vs, err := adm.ApiVersions(ctx)
	if err != nil {
		return t
	}
	for _, v := range vs.Sorted() {
		if v.Err != nil {
			continue
		}
		v.EachKeySorted(func(key, lo, hi int16) {
			t.APIVersions = append(t.APIVersions, fmt.Sprintf("%d %s %d-%d", key, kmsg.NameForKey(key), lo, hi))
		})
		t.KafkaVersionGuess = v.VersionGuess()
		break
	}
	sum := sha256.Sum256([]byte(strings.Join(t.APIVersions, "\n")))
	t.APIVersionsSHA256 = hex.EncodeToString(sum[:])
	return t
}

// FaultReport is one fault event and the run's recovery from it: how long
// acknowledged writes stopped (the longest gap between acknowledgements
// from the event until the next event or the end of the run) and how long
// after the event the acknowledged rate over a whole second, once writes
// resumed, came back to 90% of the baseline: the offered rate of an
// open-loop run, or for an unpaced run the average over the five seconds
// before the event (null when there was no rate to compare with, or it
// never did).
//
// Per partition, it reports the longest time the partition waited for an
// acknowledgement from the event until the next event (or the end of the
// run): the longest gap between its acknowledgements, counting from the
// event. KeptMajority lists the partitions that the faults in effect after
// the event left with a connected majority: a group of brokers, none
// killed or paused and none cut from another, holding a majority of the
// partition's replicas and a majority of the brokers (the metadata group).
// Those should go on taking writes after a failover.
type FaultReport struct {
	Event            FaultEvent `json:"event"`
	At               float64    `json:"at_s"`
	WritesStoppedFor float64    `json:"writes_stopped_s"`
	BaselineRate     float64    `json:"baseline_rate"`
	RecoveredAfter   *float64   `json:"recovered_after_s"`

	PartitionWaits map[int32]float64 `json:"partition_waits_s,omitempty"`
	KeptMajority   []int32           `json:"kept_majority,omitempty"`
	// LongestWait is the longest of PartitionWaits, in LongestWaitPartition;
	// LongestWaitKeptMajority the longest among KeptMajority (null if none).
	LongestWait             float64  `json:"longest_wait_s"`
	LongestWaitPartition    int32    `json:"longest_wait_partition"`
	LongestWaitKeptMajority *float64 `json:"longest_wait_kept_majority_s"`
}

// partitionWaits adds to each fault report the acknowledgement waits of
// every partition. acks need not be sorted; replicas are the partitions'
// replica sets and brokers every broker's node ID, for KeptMajority (nil:
// no partition counts as kept).
func partitionWaits(reports []FaultReport, start time.Time, acks []AckedRecord, end time.Duration, replicas map[int32][]int32, brokers []int32) {
	byPart := make(map[int32][]time.Duration)
	for _, a := range acks {
		byPart[a.Partition] = append(byPart[a.Partition], a.AckedAt)
	}
	for p := range replicas {
		if _, ok := byPart[p]; !ok {
			byPart[p] = nil
		}
	}
	last := end
	for _, times := range byPart {
		slices.Sort(times)
		if len(times) > 0 {
			last = max(last, times[len(times)-1])
		}
	}
	for k := range reports {
		fr := &reports[k]
		e := fr.Event.At.Sub(start)
		limit := last
		if k+1 < len(reports) {
			limit = min(limit, reports[k+1].Event.At.Sub(start))
		}
		fr.PartitionWaits = make(map[int32]float64, len(byPart))
		kept := keptMajority(fr.Event, replicas, brokers)
		fr.LongestWaitPartition = -1
		for p, times := range byPart {
			i := sort.Search(len(times), func(i int) bool { return times[i] >= e })
			prev, gap := e, time.Duration(0)
			for ; i < len(times) && times[i] < limit; i++ {
				gap = max(gap, times[i]-prev)
				prev = times[i]
			}
			gap = max(gap, limit-prev)
			w := gap.Seconds()
			fr.PartitionWaits[p] = w
			if w > fr.LongestWait || fr.LongestWaitPartition < 0 {
				fr.LongestWait, fr.LongestWaitPartition = w, p
			}
			if kept[p] {
				fr.KeptMajority = append(fr.KeptMajority, p)
				if fr.LongestWaitKeptMajority == nil || w > *fr.LongestWaitKeptMajority {
					fr.LongestWaitKeptMajority = &w
				}
			}
		}
		slices.Sort(fr.KeptMajority)
	}
}

// keptMajority reports which partitions the faults in effect after ev
// leave with a connected majority (see FaultReport).
func keptMajority(ev FaultEvent, replicas map[int32][]int32, brokers []int32) map[int32]bool {
	out := make(map[int32]bool)
	if len(brokers) == 0 || len(brokers) > 16 {
		return out
	}
	live := slices.DeleteFunc(slices.Clone(brokers), func(id int32) bool { return slices.Contains(ev.Down, id) })
	cut := func(a, b int32) bool {
		return slices.Contains(ev.Cuts, [2]int32{min(a, b), max(a, b)})
	}
	// Every group of live brokers none of which is cut from another.
	var groups [][]int32
	for mask := 1; mask < 1<<len(live); mask++ {
		var g []int32
		for i, id := range live {
			if mask&(1<<i) != 0 {
				g = append(g, id)
			}
		}
		if len(g) <= len(brokers)/2 {
			continue
		}
		ok := true
		for i := 0; ok && i < len(g); i++ {
			for j := i + 1; ok && j < len(g); j++ {
				ok = !cut(g[i], g[j])
			}
		}
		if ok {
			groups = append(groups, g)
		}
	}
	for p, rs := range replicas {
		for _, g := range groups {
			n := 0
			for _, r := range rs {
				if slices.Contains(g, r) {
					n++
				}
			}
			if n > len(rs)/2 {
				out[p] = true
				break
			}
		}
	}
	return out
}

// recoveries computes the recovery figures of each event from the sorted
// acknowledgement times.
func recoveries(events []FaultEvent, start time.Time, acks []time.Duration, end time.Duration, offered float64) []FaultReport {
	out := []FaultReport{}
	slices.SortStableFunc(events, func(a, b FaultEvent) int { return a.At.Compare(b.At) })
	count := func(from, to time.Duration) int {
		i := sort.Search(len(acks), func(i int) bool { return acks[i] >= from })
		j := sort.Search(len(acks), func(i int) bool { return acks[i] >= to })
		return j - i
	}
	for k, ev := range events {
		e := ev.At.Sub(start)
		// The gap after the last event may run past the end of producing,
		// into the acknowledgements of the final flush.
		limit := end
		if len(acks) > 0 {
			limit = max(end, acks[len(acks)-1])
		}
		if k+1 < len(events) {
			limit = min(limit, events[k+1].At.Sub(start))
		}
		fr := FaultReport{Event: ev, At: e.Seconds()}
		// The longest gap between acknowledgements from the event on, and
		// when it ended (writes resumed).
		i := sort.Search(len(acks), func(i int) bool { return acks[i] >= e })
		prev, gap, resumed := e, time.Duration(0), e
		for ; i < len(acks) && acks[i] < limit; i++ {
			if acks[i]-prev > gap {
				gap, resumed = acks[i]-prev, acks[i]
			}
			prev = acks[i]
		}
		if limit-prev > gap {
			gap, resumed = limit-prev, limit
		}
		fr.WritesStoppedFor = gap.Seconds()
		// The rate before (the offered rate of an open-loop run, whose
		// acknowledgements keep pace with it when all is well; else the
		// average of the five seconds before, which an earlier fault may
		// have lowered), and when a full second after writes resumed came
		// back to it.
		fr.BaselineRate = offered
		if from := max(0, e-5*time.Second); offered <= 0 && e > from {
			fr.BaselineRate = float64(count(from, e)) / (e - from).Seconds()
		}
		if fr.BaselineRate > 0 {
			// A gap no longer than a few records' spacing is noise, not a
			// stop: then the search starts at the event.
			from := e
			if gap >= max(100*time.Millisecond, time.Duration(5/fr.BaselineRate*float64(time.Second))) {
				from = max(e, resumed)
			}
			for t := from; t+time.Second <= end; t += 100 * time.Millisecond {
				if float64(count(t, t+time.Second)) >= 0.9*fr.BaselineRate {
					v := (t - e).Seconds()
					fr.RecoveredAfter = &v
					break
				}
			}
		}
		out = append(out, fr)
	}
	return out
}

// WriteJSON writes the report, indented, to path.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encoding the report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: writing the report: %w", err)
	}
	return nil
}

// ReadReport reads a report written by WriteJSON.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench: reading the report: %w", err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("bench: decoding the report %s: %w", path, err)
	}
	return &rep, nil
}

// WriteFiles writes the report's JSON and plots into dir, named
// prefix.json and prefix-<plot>.png, and returns the paths written.
func (rep *Report) WriteFiles(dir, prefix string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: output directory: %w", err)
	}
	path := filepath.Join(dir, prefix+".json")
	if err := rep.WriteJSON(path); err != nil {
		return nil, err
	}
	pngs, err := WritePlots(dir, prefix, []PlotRun{{Name: rep.Target.name(), Report: rep}})
	return append([]string{path}, pngs...), err
}

func (t Target) name() string {
	switch {
	case t.Label != "":
		return t.Label
	case t.Software != "unknown":
		return t.Software
	}
	return strings.Join(t.Bootstrap, ",")
}

func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// WriteSummary prints the human summary: throughput, latency table,
// errors by kind, fault recoveries and the audit.
func (rep *Report) WriteSummary(w io.Writer) {
	s := &rep.Summary
	sw := rep.Target.Software
	if rep.Target.Version != "" {
		sw += " " + rep.Target.Version
	}
	fmt.Fprintf(w, "target   %s (%s), topic %s, run %s\n", rep.Target.name(), sw, rep.Topic, rep.RunID)
	fmt.Fprintf(w, "records  sent %d, acknowledged %d, failed %d, consumed %d\n", s.Sent, s.Acked, s.Failed, s.Consumed)
	fmt.Fprintf(w, "rate     %.0f records/s, %.2f MB/s acknowledged over %.1f s (after %.1f s warm-up); consumed %.0f records/s\n",
		s.RecordsPerSec, s.MBPerSec, s.MeasuredSeconds, rep.Workload.Warmup.Seconds(), s.ConsumedPerSec)
	if rep.OfLimits != nil {
		fmt.Fprintf(w, "limits   %.1f%% of the synced disk write rate (×%d replicas), %.1f%% of loopback bandwidth\n",
			rep.OfLimits.DiskPercent, max(1, rep.Workload.Replication), rep.OfLimits.LoopbackPercent)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency (ms)\tavg\tp50\tp95\tp99\tp99.9\tmax\t")
	for _, row := range []struct {
		name string
		l    LatencyStats
	}{{"publish", s.Publish}, {"end-to-end", s.EndToEnd}} {
		l := row.l
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", row.name, fmtMs(l.Avg), fmtMs(l.P50), fmtMs(l.P95), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max))
	}
	_ = tw.Flush()
	if len(s.Errors) > 0 {
		fmt.Fprintln(w, "errors")
		keys := make([]string, 0, len(s.Errors))
		for k := range s.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %-40s %d\n", k, s.Errors[k])
		}
	}
	if b := rep.Backlog; b != nil {
		if b.Complete {
			fmt.Fprintf(w, "backlog  %d records (%.1f MB) built in %.1f s, drained at %.0f records/s (%.1f MB/s) while producing\n",
				b.Records, float64(b.Bytes)/1e6, b.BuiltAfter.Seconds(), b.DrainRecordsPerSec, b.DrainMBPerSec)
		} else {
			fmt.Fprintf(w, "backlog  of %d bytes not built and drained in time\n", b.TargetBytes)
		}
	}
	for _, f := range rep.Faults {
		rec := "not measured"
		if f.RecoveredAfter != nil {
			rec = fmt.Sprintf("%.1f s", *f.RecoveredAfter)
		}
		errText := ""
		if f.Event.Err != "" {
			errText = " error: " + f.Event.Err
		}
		fmt.Fprintf(w, "fault    %6.1f s %-17s broker %d: writes stopped %.2f s, rate recovered after %s%s\n",
			f.At, f.Event.Kind, f.Event.Broker, f.WritesStoppedFor, rec, errText)
		if f.PartitionWaits != nil {
			kept := "none"
			if f.LongestWaitKeptMajority != nil {
				kept = fmt.Sprintf("%.2f s", *f.LongestWaitKeptMajority)
			}
			fmt.Fprintf(w, "         longest wait for an ack %.2f s (partition %d); of the %d partitions left a connected majority: %s\n",
				f.LongestWait, f.LongestWaitPartition, len(f.KeptMajority), kept)
		}
	}
	a := &rep.Audit
	fmt.Fprintf(w, "audit    acknowledged %d, lost %d, duplicates %d, inconsistent offsets %d, moved %d, out of order %d, backwards polls %d, skipped polls %d, redelivered %d, unacknowledged but written %d\n",
		a.Acked, a.Lost, a.Duplicates, a.InconsistentOffsets, a.Moved, a.OutOfOrder, a.BackwardsPolls, a.SkippedPolls, a.Redelivered, a.UnacknowledgedWritten)
	if p := a.Problem(); p != "" {
		fmt.Fprintf(w, "AUDIT FAILED: %s\n", p)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note     %s\n", n)
	}
}
