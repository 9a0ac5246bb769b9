package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type topicElectLeadersCmd struct {
	adminFlags `embed:""`
	Partitions []string `arg:"" optional:"" placeholder:"TOPIC[:PARTITION]" help:"Partitions to elect leaders for: a topic (all its partitions) or topic:partition. None: every partition."`
	Unclean    bool     `help:"Unclean election for partitions without a leader: replicas that lost their data vote and may lead with the log they have. Acknowledged records that no live replica holds are lost."`
}

// Validate checks the partition arguments while the command line is
// parsed, so that a malformed one is a usage error.
func (c *topicElectLeadersCmd) Validate() error {
	_, err := c.set()
	return err
}

// set is the partitions named on the command line: a topic with no
// partitions stands for all of them.
func (c *topicElectLeadersCmd) set() (kadm.TopicsSet, error) {
	set := kadm.TopicsSet{}
	for _, arg := range c.Partitions {
		topic, part, found := strings.Cut(arg, ":")
		if !found {
			set.Add(topic)
			continue
		}
		p, err := strconv.ParseInt(part, 10, 32)
		if err != nil || p < 0 || topic == "" {
			return nil, fmt.Errorf("%q: want TOPIC or TOPIC:PARTITION", arg)
		}
		set.Add(topic, int32(p))
	}
	return set, nil
}

func (c *topicElectLeadersCmd) Run() error {
	set, err := c.set()
	if err != nil {
		return err
	}
	how, kind := kadm.ElectPreferredReplica, "preferred"
	if c.Unclean {
		how, kind = kadm.ElectLiveReplica, "unclean"
	}
	_, metadata := set[metadataTopic]
	if metadata && !c.Unclean {
		return fmt.Errorf("%s: the brokers elect the metadata leader themselves; only an unclean election (--unclean) can be asked for", metadataTopic)
	}
	delete(set, metadataTopic)
	ctx, cl, adm, done, err := c.clients()
	if err != nil {
		return err
	}
	defer done()
	var rows []kadm.ElectLeadersResult
	if metadata {
		rows = append(rows, electMetadataUnclean(ctx, cl, c.Timeout))
	}
	if len(set) > 0 {
		// Whole topics: name their partitions, which the request needs.
		var whole []string
		for t, ps := range set {
			if len(ps) == 0 {
				whole = append(whole, t)
			}
		}
		if len(whole) > 0 {
			td, err := adm.ListTopics(ctx, whole...)
			if err != nil {
				return fmt.Errorf("describing topics: %w", err)
			}
			for _, t := range whole {
				d, ok := td[t]
				if !ok || d.Err != nil {
					e := kerr.UnknownTopicOrPartition
					if ok {
						e = d.Err.(*kerr.Error)
					}
					return fmt.Errorf("topic %s: %w", t, e)
				}
				for p := range d.Partitions {
					set.Add(t, p)
				}
			}
		}
	}
	if !metadata || len(set) > 0 {
		res, err := adm.ElectLeaders(ctx, how, set)
		if err != nil {
			return fmt.Errorf("electing leaders: %w", err)
		}
		for _, ps := range res {
			for _, r := range ps {
				rows = append(rows, r)
			}
		}
	}
	failed := false
	elected := 0
	slices.SortFunc(rows, func(a, b kadm.ElectLeadersResult) int {
		return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	for _, t := range rows {
		name := fmt.Sprintf("topic %s partition %d", t.Topic, t.Partition)
		switch {
		case t.Err == nil:
			elected++
			fmt.Fprintf(stdout, "%s: %s election done\n", name, kind)
		case errors.Is(t.Err, kerr.ElectionNotNeeded):
			if len(c.Partitions) > 0 {
				fmt.Fprintf(stdout, "%s: election not needed\n", name)
			}
		default:
			failed = true
			fmt.Fprintf(stdout, "%s: error: %s\n", name, rowError(kafkaErrAbout(name, t.Err, t.ErrMessage)))
		}
	}
	if len(c.Partitions) == 0 && elected == 0 && !failed {
		fmt.Fprintln(stdout, "no partition needed an election")
	}
	if failed {
		return errFailed
	}
	return nil
}

// metadataTopic names the metadata group in an election.
const metadataTopic = cluster.MetadataTopic

// electMetadataUnclean asks for an unclean election of the metadata leader
// from the first broker given that answers: ElectLeaders usually goes to
// the controller, which is what the metadata lacks then.
func electMetadataUnclean(ctx context.Context, cl *kgo.Client, timeout time.Duration) kadm.ElectLeadersResult {
	res := kadm.ElectLeadersResult{Topic: metadataTopic, Partition: 0, How: kadm.ElectLiveReplica}
	req := kmsg.NewPtrElectLeadersRequest()
	req.ElectionType = 1
	req.TimeoutMillis = int32(timeout / time.Millisecond)
	rt := kmsg.NewElectLeadersRequestTopic()
	rt.Topic, rt.Partitions = metadataTopic, []int32{0}
	req.Topics = append(req.Topics, rt)
	var last error
	for _, b := range cl.SeedBrokers() {
		resp, err := req.RequestWith(ctx, b)
		if err != nil {
			last = err
			continue
		}
		res.Err = kerr.ErrorForCode(resp.ErrorCode)
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if res.Err == nil {
					res.Err = kerr.ErrorForCode(p.ErrorCode)
				}
				if p.ErrorMessage != nil {
					res.ErrMessage = *p.ErrorMessage
				}
			}
		}
		return res
	}
	res.Err = fmt.Errorf("no broker answered: %w", last)
	return res
}
