// The calls a Mattermost web or desktop client makes, through Mattermost's own JavaScript client
// (npm @mattermost/client, Client4, pinned in tests/conformance/package.json).
// Usage: node client4.cjs <site url> <login id> <password> <team id>; prints one JSON object with
// what each call returned, or {"error": ...} with the failing call.
const { Client4 } = require("@mattermost/client");

async function main([url, loginId, password, teamId]) {
  const client = new Client4();
  client.setUrl(url);
  const out = {};
  let step = "login";
  try {
    out.login = await client.login(loginId, password);
    step = "getMe"; out.me = await client.getMe();
    step = "getProfiles"; out.profiles = await client.getProfiles(0, 200);
    step = "getMyTeams"; out.teams = await client.getMyTeams();
    step = "getChannels"; out.channels = await client.getChannels(teamId, 0, 100);
    step = "getChannelByName"; out.byName = await client.getChannelByName(teamId, "town-square");
    step = "getChannel"; out.byId = await client.getChannel(out.byName.id);
    step = "createPost"; out.post = await client.createPost({ channel_id: out.byId.id, message: "hello from Client4" });
    step = "getPost"; out.got = await client.getPost(out.post.id);
    step = "getPosts"; out.posts = await client.getPosts(out.byId.id, 0, 30);
    const token = client.getToken();
    step = "logout"; out.logout = (await client.logout()).status;
    step = "getMe after logout";
    client.setToken(token);  // the old token again: the server must have ended its session
    await client.getMe().then(() => { out.afterLogout = 200; }, (err) => { out.afterLogout = err.status_code; });
  } catch (err) {
    out.error = { step, status: err.status_code, message: err.message, url: err.url };
  }
  process.stdout.write(JSON.stringify(out));
}

main(process.argv.slice(2));
