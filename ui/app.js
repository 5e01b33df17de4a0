// Placeholder: the console's front end replaces this file.
const meta = document.querySelector('meta[name="consul-rs-ui-config"]');
const config = JSON.parse(meta.content);
document.getElementById("app").textContent = `consul-rs ${config.Version}: ${config.Datacenter} / ${config.NodeName}`;
