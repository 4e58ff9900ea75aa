// "Devices online": the user's connected devices, live, and this device's name.

/** Draw the online devices from the store; `onRename(name)` gets a new name for this device. */
export function mountDevices(store, deviceName, onRename) {
  const list = document.getElementById("device-list");
  const form = document.getElementById("device-form");
  const input = document.getElementById("device-name");
  input.value = deviceName;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    onRename(input.value.trim());
  });

  function render() {
    const { online, deviceId, connection } = store.get();
    const items = online.map((device) => {
      const item = document.createElement("li");
      item.className = "device";
      item.dataset.deviceId = device.id;
      const label = document.createElement("span");
      label.className = "device-name";
      label.textContent = device.name || "Unnamed device"; // textContent: names are shown, never parsed
      item.append(label);
      if (device.id === deviceId) {
        const me = document.createElement("span");
        me.className = "badge";
        me.textContent = "this device";
        item.append(" ", me);
      }
      return item;
    });
    if (!items.length) {
      const item = document.createElement("li");
      item.className = "muted";
      item.textContent = connection === "online" ? "None" : "Unknown while offline";
      items.push(item);
    }
    list.replaceChildren(...items);
  }

  store.subscribe((state, changed) => {
    if (changed.includes("online") || changed.includes("deviceId") || changed.includes("connection")) render();
  });
  render();
}
