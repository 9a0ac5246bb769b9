package broker

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"

	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (b *Broker) describeConfigsAPI() kproto.API {
	return kproto.API{Key: kmsg.DescribeConfigs.Int16(), MinVersion: 0, MaxVersion: 4, Handle: handle(b.describeConfigs)}
}

func (b *Broker) describeConfigs(_ context.Context, _ *kproto.Request, r *kmsg.DescribeConfigsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range r.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		var err error
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			if t := b.topics.get(rr.ResourceName); t == nil {
				err = fmt.Errorf("%w: %s", ErrUnknownTopic, rr.ResourceName)
			} else {
				sr.Configs = b.describeTopicConfigs(t.configs, rr.ConfigNames, r.IncludeSynonyms, r.IncludeDocumentation)
			}
		case kmsg.ConfigResourceTypeBroker:
			// The empty name asks for cluster-wide dynamic defaults;
			// PubG1's broker configs are all static, so there are none.
			if err = b.checkBrokerResource(rr.ResourceName); err == nil && rr.ResourceName != "" {
				sr.Configs = b.describeBrokerConfigs(rr.ConfigNames, r.IncludeSynonyms, r.IncludeDocumentation)
			}
		default:
			err = fmt.Errorf("%w: resource type %v is not supported", ErrInvalidRequest, rr.ResourceType)
		}
		sr.ErrorCode = errorCode(err)
		sr.ErrorMessage = errorMessage(err)
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

func (b *Broker) checkBrokerResource(name string) error {
	if name != "" && name != strconv.Itoa(int(b.cfg.NodeID)) {
		return fmt.Errorf("%w: unexpected broker id, expected %d or empty string, but received %s", ErrInvalidRequest, b.cfg.NodeID, name)
	}
	return nil
}

func wanted(names []string, name string) bool {
	if names == nil {
		return true
	}
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// describeTopicConfigs reports a topic's configs: those set on the topic as
// DYNAMIC_TOPIC_CONFIG, the rest with their defaults.
func (b *Broker) describeTopicConfigs(set map[string]string, names []string, synonyms, docs bool) []kmsg.DescribeConfigsResponseResourceConfig {
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, name := range topicConfigNames() {
		if !wanted(names, name) {
			continue
		}
		def := topicConfigs[name]
		dv := def.def(&b.cfg)
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.ConfigType = name, kmsg.ConfigType(def.typ)
		if v, ok := set[name]; ok {
			c.Value, c.Source = &v, kmsg.ConfigSource(sourceTopic)
			if synonyms {
				c.ConfigSynonyms = append(c.ConfigSynonyms, kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{Name: name, Value: &v, Source: kmsg.ConfigSource(sourceTopic)})
			}
		} else {
			c.Value, c.Source, c.IsDefault = &dv, kmsg.ConfigSource(sourceDefault), true
		}
		if synonyms && def.brokerSynonym != "" {
			c.ConfigSynonyms = append(c.ConfigSynonyms, kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{Name: def.brokerSynonym, Value: &dv, Source: kmsg.ConfigSource(sourceDefault)})
		}
		if docs && def.doc != "" {
			d := def.doc
			c.Documentation = &d
		}
		out = append(out, c)
	}
	return out
}

// brokerConfigs is the broker's configuration as Kafka names it.
func (b *Broker) brokerConfigs() map[string]struct {
	value string
	typ   int8
} {
	type v = struct {
		value string
		typ   int8
	}
	c := &b.cfg
	ts := "CreateTime"
	if c.LogAppendTime {
		ts = "LogAppendTime"
	}
	return map[string]v{
		"broker.id":                               {strconv.Itoa(int(c.NodeID)), typeInt},
		"node.id":                                 {strconv.Itoa(int(c.NodeID)), typeInt},
		"listeners":                               {"PLAINTEXT://" + c.Listen, typeString},
		"advertised.listeners":                    {fmt.Sprintf("PLAINTEXT://%s:%d", b.advHost, b.advPort), typeString},
		"log.dirs":                                {c.DataDir, typeString},
		"num.partitions":                          {strconv.Itoa(int(c.DefaultPartitions)), typeInt},
		"default.replication.factor":              {strconv.Itoa(int(c.DefaultReplicationFactor)), typeInt},
		"auto.create.topics.enable":               {strconv.FormatBool(c.AutoCreateTopics), typeBoolean},
		"message.max.bytes":                       {strconv.Itoa(int(c.MessageMaxBytes)), typeInt},
		"socket.request.max.bytes":                {strconv.Itoa(int(c.MaxFrameBytes)), typeInt},
		"log.retention.ms":                        {strconv.FormatInt(durationMillis(c.LogRetention), 10), typeLong},
		"log.retention.bytes":                     {strconv.FormatInt(c.LogRetentionBytes, 10), typeLong},
		"log.retention.check.interval.ms":         {strconv.FormatInt(c.RetentionCheckInterval.Milliseconds(), 10), typeLong},
		"log.cleaner.backoff.ms":                  {strconv.FormatInt(c.CleanerBackoff.Milliseconds(), 10), typeLong},
		"log.message.timestamp.type":              {ts, typeString},
		"log.cleanup.policy":                      {"delete", typeList},
		"compression.type":                        {"producer", typeString},
		"min.insync.replicas":                     {"1", typeInt},
		"delete.topic.enable":                     {"true", typeBoolean},
		"auto.leader.rebalance.enable":            {strconv.FormatBool(c.AutoLeaderRebalance), typeBoolean},
		"leader.imbalance.check.interval.seconds": {strconv.FormatInt(int64(c.LeaderImbalanceCheckInterval.Seconds()), 10), typeLong},
		"leader.imbalance.per.broker.percentage":  {strconv.Itoa(c.LeaderImbalancePerBroker), typeInt},
	}
}

func (b *Broker) describeBrokerConfigs(names []string, synonyms, docs bool) []kmsg.DescribeConfigsResponseResourceConfig {
	all := b.brokerConfigs()
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, name := range keys {
		if !wanted(names, name) {
			continue
		}
		v := all[name].value
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.Value, c.ReadOnly = name, &v, true
		c.Source, c.ConfigType = kmsg.ConfigSource(sourceStaticBroker), kmsg.ConfigType(all[name].typ)
		if synonyms {
			c.ConfigSynonyms = []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{{Name: name, Value: &v, Source: kmsg.ConfigSource(sourceStaticBroker)}}
		}
		_ = docs
		out = append(out, c)
	}
	return out
}

func (b *Broker) alterConfigsAPI() kproto.API {
	return kproto.API{Key: kmsg.AlterConfigs.Int16(), MinVersion: 0, MaxVersion: 2, Handle: handle(b.alterConfigs)}
}

// alterConfigs replaces the whole set of a topic's configs (the legacy,
// non-incremental API).
func (b *Broker) alterConfigs(_ context.Context, _ *kproto.Request, r *kmsg.AlterConfigsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range r.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		err := b.changeConfigs(rr.ResourceType, rr.ResourceName, r.ValidateOnly, func(map[string]string) (map[string]string, error) {
			next := make(map[string]string, len(rr.Configs))
			for _, c := range rr.Configs {
				if c.Value == nil {
					return nil, fmt.Errorf("%w: null value for %s", ErrInvalidTopicConfig, c.Name)
				}
				next[c.Name] = *c.Value
			}
			return next, nil
		})
		sr.ErrorCode = errorCode(err)
		sr.ErrorMessage = errorMessage(err)
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

func (b *Broker) incrementalAlterConfigsAPI() kproto.API {
	return kproto.API{Key: kmsg.IncrementalAlterConfigs.Int16(), MinVersion: 0, MaxVersion: 1, Handle: handle(b.incrementalAlterConfigs)}
}

func (b *Broker) incrementalAlterConfigs(_ context.Context, _ *kproto.Request, r *kmsg.IncrementalAlterConfigsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range r.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		err := b.changeConfigs(rr.ResourceType, rr.ResourceName, r.ValidateOnly, func(cur map[string]string) (map[string]string, error) {
			next := maps.Clone(cur)
			if next == nil {
				next = make(map[string]string)
			}
			for _, c := range rr.Configs {
				if err := applyIncremental(next, c, &b.cfg); err != nil {
					return nil, err
				}
			}
			return next, nil
		})
		sr.ErrorCode = errorCode(err)
		sr.ErrorMessage = errorMessage(err)
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

func opName(op kmsg.IncrementalAlterConfigOp) string {
	if op == kmsg.IncrementalAlterConfigOpAppend {
		return "APPEND"
	}
	return "SUBTRACT"
}

func applyIncremental(cfg map[string]string, c kmsg.IncrementalAlterConfigsRequestResourceConfig, brokerCfg *Config) error {
	def, known := topicConfigs[c.Name]
	if !known {
		return fmt.Errorf("%w: unknown topic config name: %s", ErrInvalidTopicConfig, c.Name)
	}
	value := ""
	if c.Value != nil {
		value = *c.Value
	}
	switch c.Op {
	case kmsg.IncrementalAlterConfigOpSet:
		if c.Value == nil {
			return fmt.Errorf("%w: null value for %s", ErrInvalidTopicConfig, c.Name)
		}
		cfg[c.Name] = value
	case kmsg.IncrementalAlterConfigOpDelete:
		delete(cfg, c.Name)
	case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
		if def.typ != typeList {
			return fmt.Errorf("%w: can't %s to key %s because its type is not LIST", ErrInvalidTopicConfig, opName(c.Op), c.Name)
		}
		// Like Kafka, start from the value in force, the default if unset.
		cur, ok := cfg[c.Name]
		if !ok {
			cur = def.def(brokerCfg)
		}
		var items []string
		if cur != "" {
			items = strings.Split(cur, ",")
		}
		for _, v := range strings.Split(value, ",") {
			idx := indexOf(items, v)
			if c.Op == kmsg.IncrementalAlterConfigOpAppend && idx < 0 {
				items = append(items, v)
			} else if c.Op == kmsg.IncrementalAlterConfigOpSubtract && idx >= 0 {
				items = append(items[:idx], items[idx+1:]...)
			}
		}
		cfg[c.Name] = strings.Join(items, ",")
	default:
		return fmt.Errorf("%w: unknown config operation %d", ErrInvalidRequest, c.Op)
	}
	return nil
}

func indexOf(items []string, v string) int {
	for i, it := range items {
		if it == v {
			return i
		}
	}
	return -1
}

// changeConfigs computes and validates a topic's new config set and, unless
// validateOnly, stores it. Broker configs are static.
func (b *Broker) changeConfigs(typ kmsg.ConfigResourceType, name string, validateOnly bool, next func(cur map[string]string) (map[string]string, error)) error {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
	case kmsg.ConfigResourceTypeBroker:
		if err := b.checkBrokerResource(name); err != nil {
			return err
		}
		return fmt.Errorf("%w: broker configs are static; set them with pubg1 serve flags", ErrInvalidRequest)
	default:
		return fmt.Errorf("%w: resource type %v is not supported", ErrInvalidRequest, typ)
	}
	t := b.topics.get(name)
	if t == nil {
		return fmt.Errorf("%w: %s", ErrUnknownTopic, name)
	}
	cfg, err := next(t.configs)
	if err != nil {
		return err
	}
	for k, v := range cfg {
		if err := validateTopicConfig(k, v); err != nil {
			return err
		}
	}
	if validateOnly {
		return nil
	}
	return b.alterTopicConfigs(t, cfg)
}
