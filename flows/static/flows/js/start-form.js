// The start-a-run form: choosing another version reloads the form with that version's inputs;
// a submitted form cannot be sent twice by a double click.

const form = document.getElementById("start-form");
const version = form.querySelector("select[name=version]");
if (version) {
  version.addEventListener("change", () => {
    const url = new URL(window.location.href);
    url.searchParams.set("version", version.value);
    window.location.assign(url);
  });
}
form.addEventListener("submit", () => {
  for (const button of form.querySelectorAll("button[type=submit]")) button.disabled = true;
});
