import { render } from "preact";
import { App } from "./App";
import { start } from "./state";
import "./styles.css";

start();
render(<App />, document.getElementById("app")!);
