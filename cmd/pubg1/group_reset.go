package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// group reset-offsets moves the committed offsets of inactive groups, with
// the scopes, targets and dry-run default of kafka-consumer-groups
// --reset-offsets.

type groupResetOffsetsCmd struct {
	adminFlags `embed:""`
	outputFlag `embed:""`
	Group      string   `arg:"" optional:"" help:"Group whose committed offsets to reset."`
	AllGroups  bool     `name:"all-groups" help:"Every group of the cluster instead of one."`
	Topic      []string `sep:"none" placeholder:"TOPIC[:P,P...]" help:"A topic, or the listed partitions of it; repeatable."`
	AllTopics  bool     `name:"all-topics" help:"Every partition the group has a committed offset for."`

	ToEarliest bool   `name:"to-earliest" help:"Target: the log start offset."`
	ToLatest   bool   `name:"to-latest" help:"Target: the log end offset."`
	ToOffset   *int64 `name:"to-offset" placeholder:"OFFSET" help:"Target: this offset."`
	ToDatetime string `name:"to-datetime" placeholder:"TIME" help:"Target: the first record at or after TIME: yyyy-MM-ddTHH:mm:SS[.sss][zone] (local time without a zone), RFC 3339, or epoch milliseconds."`
	ByDuration string `name:"by-duration" placeholder:"DURATION" help:"Target: the first record at or after now minus DURATION: ISO 8601 PnDTnHnMnS or a Go duration (90m)."`
	ShiftBy    *int64 `name:"shift-by" placeholder:"N" help:"Target: the committed offset plus N (negative: back)."`
	ToCurrent  bool   `name:"to-current" help:"Target: the committed offset (the log end offset where there is none)."`

	Execute bool `help:"Commit the new offsets (default: only print them)."`
	DryRun  bool `name:"dry-run" help:"Only print the new offsets (the default)."`
}

// resetRow is one partition of a reset, as printed. CurrentOffset is null
// when the group has no committed offset there.
type resetRow struct {
	Group         string `json:"group"`
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	CurrentOffset *int64 `json:"current_offset"`
	NewOffset     int64  `json:"new_offset"`
	Error         string `json:"error,omitempty"`
}

type targetKind int

const (
	toEarliest targetKind = iota
	toLatest
	toOffset
	toTime
	shiftBy
	toCurrent
)

// resetTarget is the one target flag given, resolved: n is the offset of
// --to-offset, the shift of --shift-by, the time in epoch milliseconds of
// --to-datetime and --by-duration.
type resetTarget struct {
	kind targetKind
	n    int64
}

// AfterApply checks the flags that go together before anything connects,
// so that a wrong combination is a usage error. (Kong's Validate would put
// the command's path before each message.)
func (c *groupResetOffsetsCmd) AfterApply() error {
	switch {
	case c.Group == "" && !c.AllGroups:
		return errors.New("name a group or give --all-groups")
	case c.Group != "" && c.AllGroups:
		return errors.New("a group and --all-groups can't be used together")
	case len(c.Topic) == 0 && !c.AllTopics:
		return errors.New("give --topic or --all-topics")
	case len(c.Topic) > 0 && c.AllTopics:
		return errors.New("--topic and --all-topics can't be used together")
	case c.Execute && c.DryRun:
		return errors.New("--execute and --dry-run can't be used together")
	}
	if _, err := parseTopicScope(c.Topic); err != nil {
		return err
	}
	_, err := c.target(time.Now())
	return err
}

// target reads the target flags; exactly one must be given. A duration
// counts back from now.
func (c *groupResetOffsetsCmd) target(now time.Time) (resetTarget, error) {
	var given []string
	var t resetTarget
	pick := func(set bool, flag string, kind targetKind) bool {
		if set {
			given = append(given, flag)
			t.kind = kind
		}
		return set
	}
	pick(c.ToEarliest, "--to-earliest", toEarliest)
	pick(c.ToLatest, "--to-latest", toLatest)
	if pick(c.ToOffset != nil, "--to-offset", toOffset) {
		t.n = *c.ToOffset
	}
	if pick(c.ToDatetime != "", "--to-datetime", toTime) {
		at, err := parseDatetime(c.ToDatetime)
		if err != nil {
			return t, fmt.Errorf("--to-datetime %s: %w", c.ToDatetime, err)
		}
		t.n = at.UnixMilli()
	}
	if pick(c.ByDuration != "", "--by-duration", toTime) {
		d, err := parseResetDuration(c.ByDuration)
		if err != nil {
			return t, fmt.Errorf("--by-duration %s: %w", c.ByDuration, err)
		}
		t.n = now.Add(-d).UnixMilli()
	}
	if pick(c.ShiftBy != nil, "--shift-by", shiftBy) {
		t.n = *c.ShiftBy
	}
	pick(c.ToCurrent, "--to-current", toCurrent)
	switch len(given) {
	case 0:
		return t, errors.New("give one target: --to-earliest, --to-latest, --to-offset, --to-datetime, --by-duration, --shift-by or --to-current")
	case 1:
		return t, nil
	}
	return t, fmt.Errorf("%s and %s can't be used together", given[0], given[1])
}

// parseTopicScope reads --topic values, TOPIC or TOPIC:P,P,...: each
// topic's partitions, sorted, or nil for all of them.
func parseTopicScope(specs []string) (map[string][]int32, error) {
	scope := make(map[string][]int32)
	whole := make(map[string]bool)
	for _, spec := range specs {
		topic, list, hasList := strings.Cut(spec, ":")
		topic = strings.TrimSpace(topic)
		if topic == "" {
			return nil, fmt.Errorf("--topic %q: no topic name", spec)
		}
		if !hasList {
			whole[topic] = true
			scope[topic] = nil
			continue
		}
		for _, p := range strings.Split(list, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(p), 10, 32)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("--topic %s: %q is not a partition number", spec, p)
			}
			if !whole[topic] && !slices.Contains(scope[topic], int32(n)) {
				scope[topic] = append(scope[topic], int32(n))
			}
		}
	}
	for _, ps := range scope {
		slices.Sort(ps)
	}
	return scope, nil
}

// parseDatetime reads a point in time as Kafka's tools write it
// (2026-12-07T10:00:00.000, local time unless a zone follows: Z, +01:00,
// +0100 or +01), as RFC 3339, or as epoch milliseconds.
func parseDatetime(s string) (time.Time, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms < 0 {
			return time.Time{}, errors.New("epoch milliseconds must not be negative")
		}
		return time.UnixMilli(ms), nil
	}
	// Parsing accepts fractional seconds after the seconds of any layout.
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05Z0700", "2006-01-02T15:04:05Z07"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05", s, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("want yyyy-MM-ddTHH:mm:SS[.sss][zone], RFC 3339 or epoch milliseconds")
}

// isoDuration is ISO 8601's PnDTnHnMnS, the form Java's Duration prints
// and Kafka's --by-duration takes.
var isoDuration = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:[.,](\d{1,9}))?S)?)?$`)

// parseResetDuration reads --by-duration: ISO 8601 (P1DT2H, PT30M, PT1.5S)
// or a Go duration (90m, 1h30m). It must not be negative.
func parseResetDuration(s string) (time.Duration, error) {
	m := isoDuration.FindStringSubmatch(strings.ToUpper(s))
	if m == nil {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.New("want ISO 8601 PnDTnHnMnS or a Go duration such as 90m")
		}
		if d < 0 {
			return 0, errors.New("must not be negative")
		}
		return d, nil
	}
	if m[1]+m[2]+m[3]+m[4] == "" || strings.HasSuffix(m[0], "T") {
		return 0, errors.New("want ISO 8601 PnDTnHnMnS with at least one number")
	}
	var total time.Duration
	for i, unit := range []time.Duration{24 * time.Hour, time.Hour, time.Minute, time.Second} {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil || n > int64(math.MaxInt64/unit) || total > math.MaxInt64-time.Duration(n)*unit {
			return 0, errors.New("too long")
		}
		total += time.Duration(n) * unit
	}
	if frac := m[5]; frac != "" {
		ns, _ := strconv.ParseInt((frac + "00000000")[:9], 10, 64)
		if total > math.MaxInt64-time.Duration(ns) {
			return 0, errors.New("too long")
		}
		total += time.Duration(ns)
	}
	return total, nil
}

// Run plans the new offsets of every group in scope, commits them with
// --execute, and prints them.
func (c *groupResetOffsetsCmd) Run() error {
	target, err := c.target(time.Now())
	if err != nil {
		return err
	}
	scope, err := parseTopicScope(c.Topic)
	if err != nil {
		return err
	}
	if c.AllTopics {
		scope = nil
	}
	ctx, adm, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()

	groups := []string{c.Group}
	if c.AllGroups {
		listed, err := adm.ListGroups(ctx)
		if err != nil {
			return fmt.Errorf("listing groups: %w", err)
		}
		if groups = listed.Groups(); len(groups) == 0 {
			fmt.Fprintln(os.Stderr, "no groups: nothing to reset")
			return c.printResets([]resetRow{})
		}
		sort.Strings(groups)
	}
	groups, refused, err := inactiveGroups(ctx, adm, groups)
	if err != nil {
		return err
	}
	if len(groups) == 0 {
		return errors.Join(refused...)
	}
	rows, err := planResets(ctx, adm, groups, scope, target)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		fmt.Fprintln(os.Stderr, "no committed offsets: nothing to reset")
	}
	failed := false
	if c.Execute && len(rows) > 0 {
		if failed, err = commitResets(ctx, adm, rows); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "committed the new offsets of %d partitions\n", len(rows))
	} else if len(rows) > 0 {
		fmt.Fprintln(os.Stderr, "dry run: no offsets were changed; add --execute to commit them")
	}
	if err := c.printResets(rows); err != nil {
		return err
	}
	if len(refused) > 0 {
		return errors.Join(refused...)
	}
	if failed {
		return errFailed
	}
	return nil
}

// inactiveGroups splits groups into those without members (Empty, Dead, or
// not existing yet, which a commit creates) and an error for each of the
// others, whose members own their offsets.
func inactiveGroups(ctx context.Context, adm *kadm.Client, groups []string) (inactive []string, refused []error, err error) {
	described, err := adm.DescribeGroups(ctx, groups...)
	if err != nil {
		return nil, nil, fmt.Errorf("describing %s: %w", groupsText(groups), err)
	}
	for _, name := range groups {
		g, ok := described[name]
		switch {
		case !ok:
			return nil, nil, fmt.Errorf("describing group %s: no answer", name)
		case errors.Is(g.Err, kerr.GroupIDNotFound):
			// Kafka 4 answers so for a group that does not exist.
		case g.Err != nil:
			return nil, nil, kafkaErr("describing group "+name, g.Err, g.ErrMessage)
		case g.State != "Empty" && g.State != "Dead":
			refused = append(refused, notInactive(name, g.State))
			continue
		}
		inactive = append(inactive, name)
	}
	return inactive, refused, nil
}

// notInactive is Kafka's refusal, word for word, as scripts may look for it.
func notInactive(group, state string) error {
	//lint:ignore ST1005 Kafka's sentence
	return fmt.Errorf("Assignments can only be reset if the group '%s' is inactive, but the current state is %s.", group, state)
}

func groupsText(groups []string) string {
	if len(groups) == 1 {
		return "group " + groups[0]
	}
	return fmt.Sprintf("%d groups", len(groups))
}

// planResets computes each group's new offsets from its committed offsets
// and the partitions' logs, sorted by group, topic and partition. scope nil
// means every partition a group has a committed offset for.
func planResets(ctx context.Context, adm *kadm.Client, groups []string, scope map[string][]int32, target resetTarget) ([]resetRow, error) {
	committed := make(map[string]kadm.OffsetResponses)
	for _, g := range groups {
		offs, err := adm.FetchOffsets(ctx, g)
		if err != nil {
			return nil, kafkaErr("fetching the offsets of group "+g, err, "")
		}
		committed[g] = offs
	}
	rows, err := scopedRows(ctx, adm, groups, scope, committed)
	if err != nil || len(rows) == 0 {
		return rows, err
	}
	var topics []string
	for _, r := range rows {
		if !slices.Contains(topics, r.Topic) {
			topics = append(topics, r.Topic)
		}
	}
	logs, err := listLogs(ctx, adm, topics, target)
	if err != nil {
		return nil, err
	}
	for i := range rows {
		if rows[i].NewOffset, err = newOffset(rows[i], target, logs); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// scopedRows is a row for each partition of each group in scope, with the
// group's committed offset there.
func scopedRows(ctx context.Context, adm *kadm.Client, groups []string, scope map[string][]int32, committed map[string]kadm.OffsetResponses) ([]resetRow, error) {
	rows := []resetRow{}
	add := func(group, topic string, p int32) {
		row := resetRow{Group: group, Topic: topic, Partition: p}
		if o, ok := committed[group].Lookup(topic, p); ok && o.Err == nil && o.At >= 0 {
			at := o.At
			row.CurrentOffset = &at
		}
		rows = append(rows, row)
	}
	if scope == nil {
		for _, g := range groups {
			committed[g].Each(func(o kadm.OffsetResponse) {
				if o.Err == nil && o.At >= 0 {
					add(g, o.Topic, o.Partition)
				}
			})
		}
	} else {
		topics := make([]string, 0, len(scope))
		for t := range scope {
			topics = append(topics, t)
		}
		described, err := adm.ListTopics(ctx, topics...)
		if err != nil {
			return nil, fmt.Errorf("describing topics: %w", err)
		}
		for _, t := range topics {
			td, ok := described[t]
			if !ok {
				return nil, fmt.Errorf("topic %s: no answer", t)
			}
			if td.Err != nil {
				return nil, kafkaErr("topic "+t, td.Err, "")
			}
			partitions := scope[t]
			if partitions == nil {
				partitions = td.Partitions.Numbers()
			}
			for _, p := range partitions {
				if _, ok := td.Partitions[p]; !ok {
					return nil, fmt.Errorf("topic %s has no partition %d (it has %d)", t, p, len(td.Partitions))
				}
				for _, g := range groups {
					add(g, t, p)
				}
			}
		}
	}
	slices.SortFunc(rows, func(a, b resetRow) int {
		return cmp.Or(strings.Compare(a.Group, b.Group), strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return rows, nil
}

// logOffsets are the offsets of the partitions' logs a reset needs: where
// each starts and ends, and for a time, the first record at or after it.
type logOffsets struct {
	starts, ends, atTime kadm.ListedOffsets
}

func listLogs(ctx context.Context, adm *kadm.Client, topics []string, target resetTarget) (logOffsets, error) {
	var l logOffsets
	var err error
	if l.starts, err = adm.ListStartOffsets(ctx, topics...); err != nil {
		return l, fmt.Errorf("listing log start offsets: %w", err)
	}
	if l.ends, err = adm.ListEndOffsets(ctx, topics...); err != nil {
		return l, fmt.Errorf("listing log end offsets: %w", err)
	}
	if target.kind == toTime {
		// A partition without a record at or after the time gives its
		// log end offset: Kafka's tool resets to the latest offset then.
		if l.atTime, err = adm.ListOffsetsAfterMilli(ctx, target.n, topics...); err != nil {
			return l, fmt.Errorf("listing offsets by time: %w", err)
		}
	}
	return l, nil
}

// lookup is one partition's offset in a listing; a topic that is gone is
// listed as partition -1 with its error.
func lookup(l kadm.ListedOffsets, what, topic string, p int32) (int64, error) {
	o, ok := l.Lookup(topic, p)
	if !ok {
		if o, ok = l.Lookup(topic, -1); !ok {
			return 0, fmt.Errorf("%s of topic %s partition %d: no answer", what, topic, p)
		}
	}
	if o.Err != nil {
		return 0, kafkaErr(fmt.Sprintf("%s of topic %s partition %d", what, topic, p), o.Err, "")
	}
	return o.Offset, nil
}

// newOffset is a row's offset after the reset. A requested offset (by
// value or shift) is kept within the log; the others come from it, and
// --to-current keeps the commit as it is, as Kafka's tool does.
func newOffset(row resetRow, target resetTarget, logs logOffsets) (int64, error) {
	start, err := lookup(logs.starts, "the log start offset", row.Topic, row.Partition)
	if err != nil {
		return 0, err
	}
	end, err := lookup(logs.ends, "the log end offset", row.Topic, row.Partition)
	if err != nil {
		return 0, err
	}
	switch target.kind {
	case toEarliest:
		return start, nil
	case toLatest:
		return end, nil
	case toOffset:
		return clampOffset(row, target.n, start, end), nil
	case toTime:
		return lookup(logs.atTime, "the offset by time", row.Topic, row.Partition)
	case shiftBy:
		if row.CurrentOffset == nil {
			return 0, fmt.Errorf("cannot shift the offset of group %s topic %s partition %d: it has no committed offset", row.Group, row.Topic, row.Partition)
		}
		n := *row.CurrentOffset + target.n
		if target.n > 0 && n < *row.CurrentOffset {
			n = math.MaxInt64
		}
		return clampOffset(row, n, start, end), nil
	}
	// toCurrent; a partition without a commit gets the log end offset.
	if row.CurrentOffset != nil {
		return *row.CurrentOffset, nil
	}
	return end, nil
}

// clampOffset keeps a requested offset within the partition's log, saying
// so on stderr (stdout may be JSON) when it moves it, as Kafka's tool does.
func clampOffset(row resetRow, n, start, end int64) int64 {
	switch {
	case n < start:
		fmt.Fprintf(os.Stderr, "warning: group %s topic %s partition %d: offset %d is before the log start offset %d; using %d\n", row.Group, row.Topic, row.Partition, n, start, start)
		return start
	case n > end:
		fmt.Fprintf(os.Stderr, "warning: group %s topic %s partition %d: offset %d is past the log end offset %d; using %d\n", row.Group, row.Topic, row.Partition, n, end, end)
		return end
	}
	return n
}

// commitResets commits each group's new offsets as an administrator does
// (generation -1, no member), which a coordinator accepts only while the
// group has no members. Each row gets its partition's error; failed
// reports whether there was one.
func commitResets(ctx context.Context, adm *kadm.Client, rows []resetRow) (failed bool, err error) {
	byGroup := make(map[string]kadm.Offsets)
	var order []string
	for _, r := range rows {
		if byGroup[r.Group] == nil {
			byGroup[r.Group] = make(kadm.Offsets)
			order = append(order, r.Group)
		}
		offs := byGroup[r.Group]
		offs.Add(kadm.Offset{Topic: r.Topic, Partition: r.Partition, At: r.NewOffset, LeaderEpoch: -1})
	}
	results := make(map[string]kadm.OffsetResponses)
	for _, g := range order {
		resps, err := adm.CommitOffsets(ctx, g, byGroup[g])
		if err != nil {
			return false, kafkaErr("committing the offsets of group "+g, err, "")
		}
		results[g] = resps
	}
	for i := range rows {
		r := &rows[i]
		o, ok := results[r.Group].Lookup(r.Topic, r.Partition)
		switch {
		case !ok:
			r.Error = "no answer"
		case errors.Is(o.Err, kerr.UnknownMemberID):
			r.Error = rowError(&kafkaError{err: kerr.UnknownMemberID, detail: "the group has members again"})
		case o.Err != nil:
			r.Error = rowError(kafkaErrAbout("", o.Err, ""))
		default:
			continue
		}
		failed = true
	}
	return failed, nil
}

// printResets prints the rows as a table (with an ERROR column when some
// commit failed), JSON or YAML.
func (c *groupResetOffsetsCmd) printResets(rows []resetRow) error {
	if c.structured() {
		return c.emit(rows)
	}
	if len(rows) == 0 {
		return nil
	}
	withErrors := slices.ContainsFunc(rows, func(r resetRow) bool { return r.Error != "" })
	w := table()
	header := "GROUP\tTOPIC\tPARTITION\tCURRENT-OFFSET\tNEW-OFFSET"
	if withErrors {
		header += "\tERROR"
	}
	fmt.Fprintln(w, header)
	for _, r := range rows {
		line := fmt.Sprintf("%s\t%s\t%d\t%s\t%d", r.Group, r.Topic, r.Partition, offsetText(r.CurrentOffset), r.NewOffset)
		if withErrors {
			errS := "-"
			if r.Error != "" {
				errS = r.Error
			}
			line += "\t" + errS
		}
		fmt.Fprintln(w, line)
	}
	return w.Flush()
}
