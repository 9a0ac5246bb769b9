package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The topic and group commands speak the Kafka protocol through franz-go's
// admin client, so they work against any Kafka-compatible cluster.

// stdout is where the admin commands print.
var stdout io.Writer = os.Stdout

// adminFlags are the flags every admin command has.
type adminFlags struct {
	Brokers string        `default:"127.0.0.1:9092" env:"PUBG1_BROKERS" help:"Comma-separated bootstrap brokers of any Kafka-compatible cluster."`
	Timeout time.Duration `default:"30s" help:"Upper bound for the command."`
}

// admin connects an admin client; the returned function closes it and the
// context.
func (f *adminFlags) admin() (context.Context, *kadm.Client, func(), error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(f.Brokers, ",")...))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("connecting to %s: %w", f.Brokers, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, f.Timeout)
	return ctx, kadm.NewClient(cl), func() { cancel(); stop(); cl.Close() }, nil
}

// errFailed reports that some items of a command failed; each was printed.
var errFailed = errors.New("some operations failed")

func table() *tabwriter.Writer { return tableOn(stdout) }

func tableOn(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

type topicCmd struct {
	Create   topicCreateCmd   `cmd:"" help:"Create a topic."`
	List     topicListCmd     `cmd:"" help:"List topics."`
	Describe topicDescribeCmd `cmd:"" help:"Describe topics: partitions, leaders, offsets, configs."`
	Delete   topicDeleteCmd   `cmd:"" help:"Delete topics."`
}

type topicCreateCmd struct {
	adminFlags        `embed:""`
	Name              string   `arg:"" help:"Topic to create."`
	Partitions        int32    `short:"p" default:"-1" help:"Number of partitions (-1: the cluster's default)."`
	ReplicationFactor int16    `name:"replication-factor" short:"r" default:"-1" help:"Replication factor (-1: the cluster's default)."`
	Config            []string `short:"c" sep:"none" placeholder:"KEY=VALUE[,KEY=VALUE...]" help:"Topic configs; repeatable, several separated by commas (-c retention.ms=3600000,cleanup.policy=compact)."`
}

func (c *topicCreateCmd) Run() error {
	configs, err := parseConfigs(c.Config)
	if err != nil {
		return err
	}
	ctx, adm, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	resp, err := adm.CreateTopic(ctx, c.Partitions, c.ReplicationFactor, configs, c.Name)
	if err != nil {
		return kafkaErr("creating topic "+c.Name, err, resp.ErrMessage)
	}
	fmt.Fprintf(stdout, "created topic %s with %d partitions and replication factor %d\n", resp.Topic, resp.NumPartitions, resp.ReplicationFactor)
	return nil
}

// parseConfigs reads -c values: KEY=VALUE, several in one value separated
// by commas (or by semicolons, as before). A comma followed by text without
// '=' belongs to the value, so list values such as
// cleanup.policy=compact,delete need no quoting.
func parseConfigs(values []string) (map[string]*string, error) {
	configs := make(map[string]*string)
	for _, value := range values {
		var last string
		for _, part := range strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ';' }) {
			k, v, ok := strings.Cut(part, "=")
			if !ok {
				if last == "" {
					return nil, fmt.Errorf("-c %s: %q is not KEY=VALUE", value, part)
				}
				joined := *configs[last] + "," + part
				configs[last] = &joined
				continue
			}
			k = strings.TrimSpace(k)
			if k == "" {
				return nil, fmt.Errorf("-c %s: %q has no key", value, part)
			}
			if _, dup := configs[k]; dup {
				return nil, fmt.Errorf("-c: %s given twice", k)
			}
			configs[k], last = &v, k
		}
	}
	return configs, nil
}

type topicListCmd struct {
	adminFlags `embed:""`
	Internal   bool `help:"Include internal topics such as __consumer_offsets."`
}

func (c *topicListCmd) Run() error {
	ctx, adm, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	list := adm.ListTopics
	if c.Internal {
		list = adm.ListTopicsWithInternal
	}
	topics, err := list(ctx)
	if err != nil {
		return fmt.Errorf("listing topics: %w", err)
	}
	w := table()
	fmt.Fprintln(w, "TOPIC\tPARTITIONS\tREPLICATION-FACTOR\tINTERNAL")
	for _, t := range topics.Sorted() {
		if t.Err != nil {
			fmt.Fprintf(w, "%s\terror: %s\t\t\n", t.Topic, rowError(t.Err))
			continue
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%v\n", t.Topic, len(t.Partitions), t.Partitions.NumReplicas(), t.IsInternal)
	}
	return w.Flush()
}

type topicDescribeCmd struct {
	adminFlags `embed:""`
	Topics     []string `arg:"" help:"Topics to describe."`
}

func (c *topicDescribeCmd) Run() error {
	ctx, adm, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	topics, err := adm.ListTopicsWithInternal(ctx, c.Topics...)
	if err != nil {
		return fmt.Errorf("describing topics: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, c.Topics...)
	if err != nil {
		return fmt.Errorf("listing start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, c.Topics...)
	if err != nil {
		return fmt.Errorf("listing end offsets: %w", err)
	}
	configs, err := adm.DescribeTopicConfigs(ctx, c.Topics...)
	if err != nil {
		return fmt.Errorf("describing topic configs: %w", err)
	}
	failed := false
	for i, name := range c.Topics {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		t, ok := topics[name]
		if !ok || t.Err != nil {
			fmt.Fprintf(stdout, "topic %s: error: %s\n", name, rowError(t.Err))
			failed = true
			continue
		}
		fmt.Fprintf(stdout, "topic %s  id %s  partitions %d  replication factor %d  internal %v\n", name, base64.RawURLEncoding.EncodeToString(t.ID[:]), len(t.Partitions), t.Partitions.NumReplicas(), t.IsInternal)
		if rc, err := configs.On(name, nil); err == nil && rc.Err == nil {
			var set []string
			for _, cfg := range rc.Configs {
				if cfg.Source == kmsg.ConfigSourceDynamicTopicConfig && cfg.Value != nil {
					set = append(set, cfg.Key+"="+*cfg.Value)
				}
			}
			if len(set) > 0 {
				fmt.Fprintf(stdout, "configs %s\n", strings.Join(set, ", "))
			}
		}
		w := table()
		fmt.Fprintln(w, "PARTITION\tLEADER\tEPOCH\tREPLICAS\tISR\tSTART-OFFSET\tEND-OFFSET")
		for _, p := range t.Partitions.Sorted() {
			start, end := "-", "-"
			if o, ok := starts.Lookup(name, p.Partition); ok && o.Err == nil {
				start = fmt.Sprint(o.Offset)
			}
			if o, ok := ends.Lookup(name, p.Partition); ok && o.Err == nil {
				end = fmt.Sprint(o.Offset)
			}
			fmt.Fprintf(w, "%d\t%d\t%d\t%v\t%v\t%s\t%s\n", p.Partition, p.Leader, p.LeaderEpoch, p.Replicas, p.ISR, start, end)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if failed {
		return errFailed
	}
	return nil
}

type topicDeleteCmd struct {
	adminFlags `embed:""`
	Topics     []string `arg:"" help:"Topics to delete."`
}

func (c *topicDeleteCmd) Run() error {
	ctx, adm, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	resps, err := adm.DeleteTopics(ctx, c.Topics...)
	if err != nil {
		return fmt.Errorf("deleting topics: %w", err)
	}
	failed := false
	for _, r := range resps.Sorted() {
		if r.Err != nil {
			fmt.Fprintf(stdout, "topic %s: error: %s\n", r.Topic, rowError(kafkaErrAbout("topic "+r.Topic, r.Err, r.ErrMessage)))
			failed = true
			continue
		}
		fmt.Fprintf(stdout, "deleted topic %s\n", r.Topic)
	}
	if failed {
		return errFailed
	}
	return nil
}

type groupCmd struct {
	List     groupListCmd     `cmd:"" help:"List consumer groups."`
	Describe groupDescribeCmd `cmd:"" help:"Describe groups: members, assignments, committed offsets and lag."`
	Delete   groupDeleteCmd   `cmd:"" help:"Delete empty groups and their offsets."`
}

type groupListCmd struct {
	adminFlags `embed:""`
	State      []string `help:"Only groups in these states (Stable, Empty, PreparingRebalance, ...)."`
}

func (c *groupListCmd) Run() error {
	ctx, adm, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	groups, err := adm.ListGroups(ctx, c.State...)
	if err != nil {
		return fmt.Errorf("listing groups: %w", err)
	}
	w := table()
	fmt.Fprintln(w, "GROUP\tSTATE\tPROTOCOL-TYPE\tCOORDINATOR")
	for _, g := range groups.Sorted() {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", g.Group, g.State, g.ProtocolType, g.Coordinator)
	}
	return w.Flush()
}

type groupDescribeCmd struct {
	adminFlags `embed:""`
	Groups     []string `arg:"" optional:"" help:"Groups to describe (default: every group)."`
}

func (c *groupDescribeCmd) Run() error {
	ctx, adm, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	groups := c.Groups
	if len(groups) == 0 {
		listed, err := adm.ListGroups(ctx)
		if err != nil {
			return fmt.Errorf("listing groups: %w", err)
		}
		groups = listed.Groups()
		sort.Strings(groups)
	}
	if len(groups) == 0 {
		fmt.Fprintln(stdout, "no groups")
		return nil
	}
	lags, err := adm.Lag(ctx, groups...)
	if err != nil {
		return fmt.Errorf("describing groups: %w", err)
	}
	failed := false
	for i, name := range groups {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		l, ok := lags[name]
		if !ok {
			fmt.Fprintf(stdout, "group %s: no answer\n", name)
			failed = true
			continue
		}
		if err := l.Error(); err != nil {
			fmt.Fprintf(stdout, "group %s: error: %s\n", name, rowError(err))
			failed = true
			continue
		}
		if err := printGroup(l); err != nil {
			return err
		}
	}
	if failed {
		return errFailed
	}
	return nil
}

// printGroup prints one group as kafka-consumer-groups --describe does,
// with members first.
func printGroup(l kadm.DescribedGroupLag) error {
	fmt.Fprintf(stdout, "group %s  state %s  protocol %s/%s  members %d  coordinator %d (%s:%d)\n",
		l.Group, l.State, l.ProtocolType, l.Protocol, len(l.Members), l.Coordinator.NodeID, l.Coordinator.Host, l.Coordinator.Port)
	if len(l.Members) > 0 {
		w := table()
		fmt.Fprintln(w, "MEMBER-ID\tINSTANCE-ID\tCLIENT-ID\tHOST\tPARTITIONS")
		for _, m := range l.Members {
			instance := "-"
			if m.InstanceID != nil {
				instance = *m.InstanceID
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", m.MemberID, instance, m.ClientID, m.ClientHost, assignedPartitions(m))
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	lags := l.Lag.Sorted()
	if len(lags) == 0 {
		fmt.Fprintln(stdout, "no committed offsets or assigned partitions")
		return nil
	}
	w := table()
	fmt.Fprintln(w, "TOPIC\tPARTITION\tCURRENT-OFFSET\tLOG-END-OFFSET\tLAG\tMEMBER-ID")
	var committed, end, lag int64
	for _, pl := range lags {
		cur, endS, lagS, member := "-", "-", "-", "-"
		if pl.Commit.At >= 0 {
			cur = fmt.Sprint(pl.Commit.At)
			committed += pl.Commit.At
		}
		if pl.End.Err == nil && pl.End.Offset >= 0 {
			endS = fmt.Sprint(pl.End.Offset)
			end += pl.End.Offset
		}
		if pl.Err == nil && pl.Lag >= 0 {
			lagS = fmt.Sprint(pl.Lag)
			lag += pl.Lag
		}
		if pl.Member != nil {
			member = pl.Member.MemberID
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", pl.Topic, pl.Partition, cur, endS, lagS, member)
	}
	fmt.Fprintf(w, "TOTAL\t\t%d\t%d\t%d\t\n", committed, end, lag)
	return w.Flush()
}

// assignedPartitions formats a consumer member's assignment as
// topic[0 1 2], ...; "-" when it has none or is not a consumer.
func assignedPartitions(m kadm.DescribedGroupMember) string {
	a, ok := m.Assigned.AsConsumer()
	if !ok || len(a.Topics) == 0 {
		return "-"
	}
	var parts []string
	for _, t := range a.Topics {
		ps := slices.Clone(t.Partitions)
		slices.Sort(ps)
		parts = append(parts, fmt.Sprintf("%s%v", t.Topic, ps))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

type groupDeleteCmd struct {
	adminFlags `embed:""`
	Groups     []string `arg:"" help:"Groups to delete."`
}

func (c *groupDeleteCmd) Run() error {
	ctx, adm, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	resps, err := adm.DeleteGroups(ctx, c.Groups...)
	if err != nil {
		return fmt.Errorf("deleting groups: %w", err)
	}
	failed := false
	for _, r := range resps.Sorted() {
		if r.Err != nil {
			fmt.Fprintf(stdout, "group %s: error: %s\n", r.Group, rowError(r.Err))
			failed = true
			continue
		}
		fmt.Fprintf(stdout, "deleted group %s\n", r.Group)
	}
	if failed {
		return errFailed
	}
	return nil
}
