// Reads a JSON array of Kubernetes objects on stdin; prints {"<kind>/<name>": "<errors>"} for
// each monitoring.coreos.com/v1 object that does not conform to prometheus-operator's types.
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const models = { PodMonitor, PrometheusRule, ServiceMonitor };
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const objects = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const problems = {};
let checked = 0;
for (const object of objects) {
  const Model = models[object.kind];
  if (object.apiVersion !== "monitoring.coreos.com/v1" || !Model) continue;
  checked += 1;
  try {
    new Model(object).validate();
  } catch (error) {
    problems[`${object.kind}/${object.metadata?.name}`] = String(error.message ?? error);
  }
}
process.stdout.write(JSON.stringify({ checked, problems }));
