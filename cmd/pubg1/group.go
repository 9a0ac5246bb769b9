package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type groupCmd struct {
	List     groupListCmd     `cmd:"" help:"List consumer groups."`
	Describe groupDescribeCmd `cmd:"" help:"Describe groups: members, assignments, committed offsets and lag."`
	Delete   groupDeleteCmd   `cmd:"" help:"Delete empty groups and their offsets."`

	ResetOffsets groupResetOffsetsCmd `cmd:"" name:"reset-offsets" aliases:"seek" help:"Move the committed offsets of inactive groups (dry run unless --execute)."`
}

type groupListCmd struct {
	adminFlags `embed:""`
	outputFlag `embed:""`
	State      []string `help:"Only groups in these states (Stable, Empty, PreparingRebalance, ...)."`
}

// groupListed is one row of group list.
type groupListed struct {
	Group        string `json:"group"`
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	Coordinator  int32  `json:"coordinator"`
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
	rows := []groupListed{}
	for _, g := range groups.Sorted() {
		rows = append(rows, groupListed{g.Group, g.State, g.ProtocolType, g.Coordinator})
	}
	if c.structured() {
		return c.emit(rows)
	}
	w := table()
	fmt.Fprintln(w, "GROUP\tSTATE\tPROTOCOL-TYPE\tCOORDINATOR")
	for _, g := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", g.Group, g.State, g.ProtocolType, g.Coordinator)
	}
	return w.Flush()
}

type groupDescribeCmd struct {
	adminFlags `embed:""`
	outputFlag `embed:""`
	Groups     []string `arg:"" optional:"" help:"Groups to describe (default: every group)."`
}

// groupInfo is one group as group describe prints it.
type groupInfo struct {
	Group        string        `json:"group"`
	State        string        `json:"state,omitempty"`
	ProtocolType string        `json:"protocol_type,omitempty"`
	Protocol     string        `json:"protocol,omitempty"`
	Coordinator  *brokerAddr   `json:"coordinator,omitempty"`
	Members      []memberInfo  `json:"members,omitempty"`
	Offsets      []groupOffset `json:"offsets,omitempty"`
	Totals       *groupTotals  `json:"totals,omitempty"`
	Error        string        `json:"error,omitempty"`
}

type brokerAddr struct {
	ID   int32  `json:"id"`
	Host string `json:"host"`
	Port int32  `json:"port"`
}

type memberInfo struct {
	MemberID   string            `json:"member_id"`
	InstanceID *string           `json:"instance_id"`
	ClientID   string            `json:"client_id"`
	Host       string            `json:"host"`
	Assigned   []topicPartitions `json:"assigned"`
}

type topicPartitions struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

// groupOffset is one partition of a group; offsets and lag are null when
// unknown (no commit, or the partition's leader did not answer).
type groupOffset struct {
	Topic           string  `json:"topic"`
	Partition       int32   `json:"partition"`
	CommittedOffset *int64  `json:"committed_offset"`
	LogEndOffset    *int64  `json:"log_end_offset"`
	Lag             *int64  `json:"lag"`
	MemberID        *string `json:"member_id"`
	Error           string  `json:"error,omitempty"`
}

type groupTotals struct {
	CommittedOffset int64 `json:"committed_offset"`
	LogEndOffset    int64 `json:"log_end_offset"`
	Lag             int64 `json:"lag"`
}

func (c *groupDescribeCmd) Run() error {
	ctx, cl, adm, done, err := c.clients()
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
	infos := []groupInfo{}
	failed := false
	if len(groups) > 0 {
		lags, err := groupLags(ctx, cl, adm, groups)
		if err != nil && len(lags) == 0 {
			return fmt.Errorf("describing groups: %w", err)
		}
		for _, name := range groups {
			info := groupInfo{Group: name}
			l, ok := lags[name]
			switch {
			case !ok:
				info.Error = rowError(err)
			case l.Error() != nil:
				info.Error = rowError(l.Error())
			default:
				info = describedGroup(l)
			}
			if info.Error != "" {
				failed = true
			}
			infos = append(infos, info)
		}
	}
	if c.structured() {
		err = c.emit(infos)
	} else {
		err = printGroups(infos)
	}
	if err == nil && failed {
		err = errFailed
	}
	return err
}

// groupLags is kadm's Lag with the partitions' offsets asked of each
// leader once (leaderOffsets), so that a partition whose leader is down
// costs its row rather than the command. A group whose coordinator does
// not answer gets its error; err is for a failure of everything.
func groupLags(ctx context.Context, cl *kgo.Client, adm *kadm.Client, groups []string) (kadm.DescribedGroupLags, error) {
	lags := make(kadm.DescribedGroupLags)
	described, err := adm.DescribeGroups(ctx, groups...)
	if se, ok := errors.AsType[*kadm.ShardErrors](err); ok && !se.AllFailed {
		for _, e := range se.Errs {
			if req, ok := e.Req.(*kmsg.DescribeGroupsRequest); ok {
				for _, g := range req.Groups {
					lags[g] = kadm.DescribedGroupLag{Group: g, Coordinator: e.Broker, DescribeErr: e.Err}
				}
			}
		}
	} else if err != nil {
		return nil, err
	}
	var ok []string
	for name, g := range described {
		if g.Err == nil {
			ok = append(ok, name)
		}
	}
	fetched := adm.FetchManyOffsets(ctx, ok...)
	topics := described.AssignedPartitions()
	topics.Merge(fetched.CommittedPartitions())
	topics.MergeTopics(described.JoinTopics())
	var md kadm.Metadata
	if names := topics.Topics(); len(names) > 0 {
		if md, err = adm.Metadata(ctx, names...); err != nil {
			return nil, err
		}
	}
	starts, ends := make(kadm.ListedOffsets), make(kadm.ListedOffsets)
	for tp, o := range leaderOffsets(ctx, cl, md) {
		var oErr error
		if o.err != "" {
			oErr = errors.New(o.err)
		}
		for _, l := range []struct {
			dst    kadm.ListedOffsets
			offset *int64
		}{{starts, o.start}, {ends, o.end}} {
			lo := kadm.ListedOffset{Topic: tp.topic, Partition: tp.partition, Offset: -1, LeaderEpoch: -1, Err: oErr}
			if l.offset != nil {
				lo.Offset = *l.offset
			} else if lo.Err == nil {
				lo.Err = errors.New("no offset")
			}
			if l.dst[tp.topic] == nil {
				l.dst[tp.topic] = make(map[int32]kadm.ListedOffset)
			}
			l.dst[tp.topic][tp.partition] = lo
		}
	}
	for name, g := range described {
		l := kadm.DescribedGroupLag{
			Group: name, Coordinator: g.Coordinator, State: g.State, ProtocolType: g.ProtocolType,
			Protocol: g.Protocol, Members: g.Members, DescribeErr: g.Err,
		}
		if g.Err == nil {
			if f := fetched[name]; f.Err != nil {
				l.FetchErr = f.Err
			} else {
				l.Lag = kadm.CalculateGroupLagWithStartOffsets(g, f.Fetched, starts, ends)
			}
		}
		lags[name] = l
	}
	return lags, nil
}

func describedGroup(l kadm.DescribedGroupLag) groupInfo {
	info := groupInfo{
		Group: l.Group, State: l.State, ProtocolType: l.ProtocolType, Protocol: l.Protocol,
		Coordinator: &brokerAddr{l.Coordinator.NodeID, l.Coordinator.Host, l.Coordinator.Port},
		Members:     []memberInfo{}, Offsets: []groupOffset{}, Totals: &groupTotals{},
	}
	for _, m := range l.Members {
		info.Members = append(info.Members, memberInfo{m.MemberID, m.InstanceID, m.ClientID, m.ClientHost, assigned(m)})
	}
	for _, pl := range l.Lag.Sorted() {
		o := groupOffset{Topic: pl.Topic, Partition: pl.Partition}
		if pl.Commit.At >= 0 {
			o.CommittedOffset = &pl.Commit.At
			info.Totals.CommittedOffset += pl.Commit.At
		}
		if pl.End.Err == nil && pl.End.Offset >= 0 {
			o.LogEndOffset = &pl.End.Offset
			info.Totals.LogEndOffset += pl.End.Offset
		}
		if pl.Err == nil && pl.Lag >= 0 {
			o.Lag = &pl.Lag
			info.Totals.Lag += pl.Lag
		}
		if pl.Member != nil {
			o.MemberID = &pl.Member.MemberID
		}
		if pl.Err != nil {
			o.Error = rowError(pl.Err)
		} else if pl.End.Err != nil {
			o.Error = rowError(pl.End.Err)
		}
		info.Offsets = append(info.Offsets, o)
	}
	return info
}

// printGroups prints groups as kafka-consumer-groups --describe does,
// with members first.
func printGroups(infos []groupInfo) error {
	if len(infos) == 0 {
		fmt.Fprintln(stdout, "no groups")
		return nil
	}
	for i, g := range infos {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		if g.Error != "" {
			fmt.Fprintf(stdout, "group %s: error: %s\n", g.Group, g.Error)
			continue
		}
		fmt.Fprintf(stdout, "group %s  state %s  protocol %s/%s  members %d  coordinator %d (%s:%d)\n",
			g.Group, g.State, g.ProtocolType, g.Protocol, len(g.Members), g.Coordinator.ID, g.Coordinator.Host, g.Coordinator.Port)
		if len(g.Members) > 0 {
			w := table()
			fmt.Fprintln(w, "MEMBER-ID\tINSTANCE-ID\tCLIENT-ID\tHOST\tPARTITIONS")
			for _, m := range g.Members {
				instance := "-"
				if m.InstanceID != nil {
					instance = *m.InstanceID
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", m.MemberID, instance, m.ClientID, m.Host, assignedText(m.Assigned))
			}
			if err := w.Flush(); err != nil {
				return err
			}
		}
		if len(g.Offsets) == 0 {
			fmt.Fprintln(stdout, "no committed offsets or assigned partitions")
			continue
		}
		w := table()
		fmt.Fprintln(w, "TOPIC\tPARTITION\tCURRENT-OFFSET\tLOG-END-OFFSET\tLAG\tMEMBER-ID\tERROR")
		for _, o := range g.Offsets {
			member, errS := "-", "-"
			if o.MemberID != nil {
				member = *o.MemberID
			}
			if o.Error != "" {
				errS = o.Error
			}
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", o.Topic, o.Partition, offsetText(o.CommittedOffset), offsetText(o.LogEndOffset), offsetText(o.Lag), member, errS)
		}
		fmt.Fprintf(w, "TOTAL\t\t%d\t%d\t%d\t\t\n", g.Totals.CommittedOffset, g.Totals.LogEndOffset, g.Totals.Lag)
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// assigned is a consumer member's assignment, sorted; empty when it has
// none or is not a consumer.
func assigned(m kadm.DescribedGroupMember) []topicPartitions {
	out := []topicPartitions{}
	a, ok := m.Assigned.AsConsumer()
	if !ok {
		return out
	}
	for _, t := range a.Topics {
		ps := slices.Clone(t.Partitions)
		slices.Sort(ps)
		out = append(out, topicPartitions{t.Topic, ps})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	return out
}

// assignedText formats an assignment as topic[0 1 2], ...; "-" when empty.
func assignedText(a []topicPartitions) string {
	if len(a) == 0 {
		return "-"
	}
	var parts []string
	for _, t := range a {
		parts = append(parts, fmt.Sprintf("%s%v", t.Topic, t.Partitions))
	}
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
