"use strict";
// The image page's reverse search: the picture leaves the newsroom only when the user presses the button
// (POST .../share makes a short-lived public link); the links returned are then listed. Text from the
// server is inserted with textContent only.
(() => {
  const section = document.getElementById("reverse-search");
  if (!section) return;
  const button = document.getElementById("share");
  const list = document.getElementById("share-links");
  const state = document.getElementById("share-state");
  const problem = document.getElementById("share-problem");
  const NAMES = { google_lens: "Google Lens", bing: "Bing Visual Search", yandex: "Yandex Images", tineye: "TinEye" };

  button.addEventListener("click", async () => {
    button.disabled = true;
    problem.hidden = true;
    try {
      const answer = await Desk.api("POST", section.dataset.shareUrl);
      list.replaceChildren();
      for (const [name, url] of Object.entries(answer.links || {})) {
        const item = document.createElement("li");
        const link = document.createElement("a");
        link.href = url;
        link.rel = "noopener noreferrer";
        link.target = "_blank";
        link.textContent = NAMES[name] || name;
        item.append(link);
        list.append(item);
      }
      state.textContent = `Shared for reverse search ${new Date(answer.shared_at).toLocaleString()}; the public link expires in 15 minutes.`;
    } catch (error) {
      Desk.show(problem, error);
    } finally {
      button.disabled = false;
    }
  });
})();
