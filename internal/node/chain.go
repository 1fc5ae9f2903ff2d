package node

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/handlers"
)

// checkChain refuses a spec whose outputs come back to its own topic
// through other handlers (orders → a → x → b → orders): each output would
// be consumed again, for ever. Spec.Validate already refuses the direct
// loop; onSuccess.allowLoop forces both.
func (n *Node) checkChain(spec handlers.Spec) error {
	if spec.OnSuccess == nil || spec.OnSuccess.AllowLoop {
		return nil
	}
	// consumers[topic] are the handlers (other than spec) that consume it.
	consumers := map[string][]handlers.Spec{}
	for _, e := range n.reg.List() {
		if e.Spec.Name != spec.Name {
			consumers[e.Spec.Topic] = append(consumers[e.Spec.Topic], e.Spec)
		}
	}
	type step struct {
		topic string
		path  []string
	}
	seen := map[string]bool{}
	queue := []step{{spec.OnSuccess.Topic, []string{spec.Topic, spec.Name, spec.OnSuccess.Topic}}}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if seen[s.topic] {
			continue
		}
		seen[s.topic] = true
		for _, c := range consumers[s.topic] {
			if c.OnSuccess == nil {
				continue
			}
			path := append(append([]string(nil), s.path...), c.Name, c.OnSuccess.Topic)
			if c.OnSuccess.Topic == spec.Topic {
				return &handlers.FieldError{Field: "onSuccess.topic", Msg: fmt.Sprintf(
					"the chain loops back to the handler's own topic: %s; set onSuccess.allowLoop: true if that is meant",
					strings.Join(path, " → "))}
			}
			queue = append(queue, step{c.OnSuccess.Topic, path})
		}
	}
	return nil
}
