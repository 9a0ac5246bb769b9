package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// leaderTimeout bounds what one broker may take to answer for its
// partitions, so that a dead or frozen leader costs its rows, not the
// command.
const leaderTimeout = 5 * time.Second

type topicDescribeCmd struct {
	adminFlags `embed:""`
	outputFlag `embed:""`
	Topics     []string `arg:"" help:"Topics to describe."`
}

// topicInfo is one topic as topic describe prints it.
type topicInfo struct {
	Name              string            `json:"name"`
	ID                string            `json:"id,omitempty"`
	Internal          bool              `json:"internal"`
	PartitionCount    int               `json:"partition_count"`
	ReplicationFactor int               `json:"replication_factor"`
	Configs           map[string]string `json:"configs,omitempty"`
	ConfigsError      string            `json:"configs_error,omitempty"`
	Partitions        []partitionInfo   `json:"partitions,omitempty"`
	Error             string            `json:"error,omitempty"`
}

// partitionInfo is one partition's row. Offsets are null when its leader
// did not answer; Error then says why.
type partitionInfo struct {
	Partition       int32   `json:"partition"`
	Leader          int32   `json:"leader"`
	LeaderEpoch     int32   `json:"leader_epoch"`
	Replicas        []int32 `json:"replicas"`
	ISR             []int32 `json:"isr"`
	OfflineReplicas []int32 `json:"offline_replicas"`
	StartOffset     *int64  `json:"start_offset"`
	EndOffset       *int64  `json:"end_offset"`
	Error           string  `json:"error,omitempty"`
}

func (c *topicDescribeCmd) Run() error {
	ctx, cl, adm, done, err := c.clients()
	if err != nil {
		return err
	}
	defer done()
	md, err := adm.Metadata(ctx, c.Topics...)
	if err != nil {
		return fmt.Errorf("describing topics: %w", err)
	}
	offsets := leaderOffsets(ctx, cl, md)
	// Configs are one request to any broker; when it fails, the
	// partitions are still worth printing.
	configs, cfgErr := adm.DescribeTopicConfigs(ctx, c.Topics...)

	var infos []topicInfo
	failed := false
	for _, name := range c.Topics {
		info := topicInfo{Name: name}
		t, ok := md.Topics[name]
		if !ok || t.Err != nil {
			info.Error = rowError(t.Err)
			infos = append(infos, info)
			failed = true
			continue
		}
		info.ID = base64.RawURLEncoding.EncodeToString(t.ID[:])
		info.Internal, info.PartitionCount, info.ReplicationFactor = t.IsInternal, len(t.Partitions), t.Partitions.NumReplicas()
		if rc, err := configs.On(name, nil); cfgErr != nil || err != nil || rc.Err != nil {
			info.ConfigsError = rowError(firstErr(cfgErr, err, rc.Err))
		} else {
			for _, cfg := range rc.Configs {
				if cfg.Source == kmsg.ConfigSourceDynamicTopicConfig && cfg.Value != nil {
					if info.Configs == nil {
						info.Configs = make(map[string]string)
					}
					info.Configs[cfg.Key] = *cfg.Value
				}
			}
		}
		for _, p := range t.Partitions.Sorted() {
			row := partitionInfo{
				Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch,
				Replicas: orEmpty(p.Replicas), ISR: orEmpty(p.ISR), OfflineReplicas: orEmpty(p.OfflineReplicas),
			}
			o := offsets[topicPartition{name, p.Partition}]
			row.StartOffset, row.EndOffset = o.start, o.end
			switch {
			case p.Err != nil:
				row.Error = rowError(p.Err)
			case o.err != "":
				row.Error = o.err
			}
			info.Partitions = append(info.Partitions, row)
		}
		infos = append(infos, info)
	}
	if c.structured() {
		if err := c.emit(infos); err != nil {
			return err
		}
	} else if err := printTopics(infos); err != nil {
		return err
	}
	if failed {
		return errFailed
	}
	return nil
}

func printTopics(infos []topicInfo) error {
	for i, info := range infos {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		if info.Error != "" {
			fmt.Fprintf(stdout, "topic %s: error: %s\n", info.Name, info.Error)
			continue
		}
		fmt.Fprintf(stdout, "topic %s  id %s  partitions %d  replication factor %d  internal %v\n", info.Name, info.ID, info.PartitionCount, info.ReplicationFactor, info.Internal)
		if info.ConfigsError != "" {
			fmt.Fprintf(stdout, "configs: error: %s\n", info.ConfigsError)
		} else if len(info.Configs) > 0 {
			var set []string
			for k, v := range info.Configs {
				set = append(set, k+"="+v)
			}
			sort.Strings(set)
			fmt.Fprintf(stdout, "configs %s\n", strings.Join(set, ", "))
		}
		w := table()
		fmt.Fprintln(w, "PARTITION\tLEADER\tEPOCH\tREPLICAS\tISR\tSTART-OFFSET\tEND-OFFSET\tERROR")
		for _, p := range info.Partitions {
			leader := fmt.Sprint(p.Leader)
			if p.Leader < 0 {
				leader = "none"
			}
			errS := "-"
			if p.Error != "" {
				errS = p.Error
			}
			fmt.Fprintf(w, "%d\t%s\t%d\t%v\t%v\t%s\t%s\t%s\n", p.Partition, leader, p.LeaderEpoch, p.Replicas, p.ISR, offsetText(p.StartOffset), offsetText(p.EndOffset), errS)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func offsetText(o *int64) string {
	if o == nil {
		return "-"
	}
	return fmt.Sprint(*o)
}

func orEmpty(s []int32) []int32 {
	if s == nil {
		return []int32{}
	}
	return s
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

type topicPartition struct {
	topic     string
	partition int32
}

// partitionOffsets is what a partition's leader said of its log, or why
// it said nothing.
type partitionOffsets struct {
	start, end *int64
	err        string
}

// leaderOffsets asks every leader in md, in parallel and once each, for
// the start and end offsets of the partitions it leads. The requests go to
// the leader named in md without the client's retries: a partition with no
// leader, or whose leader does not answer within leaderTimeout, gets an
// error in its row while the others are answered.
func leaderOffsets(ctx context.Context, cl *kgo.Client, md kadm.Metadata) map[topicPartition]partitionOffsets {
	out := make(map[topicPartition]partitionOffsets)
	byLeader := make(map[int32]map[string][]int32)
	for _, t := range md.Topics {
		if t.Err != nil {
			continue
		}
		for _, p := range t.Partitions {
			tp := topicPartition{t.Topic, p.Partition}
			switch {
			case p.Leader < 0:
				out[tp] = partitionOffsets{err: "no leader"}
			case !hasBroker(md.Brokers, p.Leader):
				out[tp] = partitionOffsets{err: fmt.Sprintf("leader %d is not among the cluster's brokers", p.Leader)}
			default:
				if byLeader[p.Leader] == nil {
					byLeader[p.Leader] = make(map[string][]int32)
				}
				byLeader[p.Leader][t.Topic] = append(byLeader[p.Leader][t.Topic], p.Partition)
			}
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for leader, topics := range byLeader {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, leaderTimeout)
			defer cancel()
			starts, errStart := listOffsetsAt(ctx, cl.Broker(int(leader)), topics, -2)
			ends, errEnd := listOffsetsAt(ctx, cl.Broker(int(leader)), topics, -1)
			mu.Lock()
			defer mu.Unlock()
			for topic, ps := range topics {
				for _, p := range ps {
					tp := topicPartition{topic, p}
					var o partitionOffsets
					if err := firstErr(errStart, errEnd); err != nil {
						o.err = fmt.Sprintf("leader %d: %s", leader, leaderError(ctx, err))
						out[tp] = o
						continue
					}
					s, e := starts[tp], ends[tp]
					if s.err != nil || e.err != nil {
						o.err = rowError(firstErr(s.err, e.err))
					}
					if s.err == nil {
						o.start = &s.offset
					}
					if e.err == nil {
						o.end = &e.offset
					}
					out[tp] = o
				}
			}
		})
	}
	wg.Wait()
	return out
}

// leaderError is a failed request to a leader as its rows show it.
func leaderError(ctx context.Context, err error) string {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return fmt.Sprintf("no answer within %s", leaderTimeout)
	}
	return rowError(err)
}

func hasBroker(brokers kadm.BrokerDetails, id int32) bool {
	for _, b := range brokers {
		if b.NodeID == id {
			return true
		}
	}
	return false
}

type listedOffset struct {
	offset int64
	err    error
}

// listOffsetsAt sends one ListOffsets request for timestamp (-2 earliest,
// -1 latest) to broker b.
func listOffsetsAt(ctx context.Context, b *kgo.Broker, topics map[string][]int32, timestamp int64) (map[topicPartition]listedOffset, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	for topic, ps := range topics {
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		for _, p := range ps {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = p, timestamp, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	kresp, err := b.Request(ctx, req)
	if err != nil {
		return nil, err
	}
	resp := kresp.(*kmsg.ListOffsetsResponse)
	out := make(map[topicPartition]listedOffset)
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			out[topicPartition{t.Topic, p.Partition}] = listedOffset{offset: p.Offset, err: kerr.ErrorForCode(p.ErrorCode)}
		}
	}
	// A partition the broker left out of its answer has no offsets.
	for topic, ps := range topics {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			if _, ok := out[tp]; !ok {
				out[tp] = listedOffset{err: fmt.Errorf("not in the leader's answer")}
			}
		}
	}
	return out, nil
}
